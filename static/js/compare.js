// Compare runs, enhanced: every column streams over its own request, side by side.
// Without this file the form's POST generates every column (concurrently, on the server)
// and the run page shows them when all have ended. Uses app.js's serverSentEvents,
// replaceHtml, followReply and submitPlainly.
"use strict";

function setUpCompareForm() {
  const form = document.getElementById("compare-form");
  if (!form || !window.ReadableStream) return;
  form.addEventListener("submit", async (event) => {
    if (form.dataset.plain) return;
    event.preventDefault();
    if (form.dataset.submitting) return;  // one submit, one run (the server checks too)
    form.dataset.submitting = "true";
    const button = form.querySelector("button.primary");
    button.disabled = true;
    button.textContent = button.dataset.busyLabel;
    let response;
    try {
      // Saves the run without generating anything; the run page opens one stream per column.
      response = await fetch(form.dataset.startUrl, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value },
        credentials: "same-origin",
      });
    } catch (error) {
      response = null;
    }
    if (!response || !response.ok) {
      // 400: the plain path shows the errors; anything else: it runs the comparison itself.
      submitPlainly(form, null);
      return;
    }
    window.location.assign((await response.json()).url);
  });
}

function streamCompareColumns() {
  const run = document.getElementById("compare-run");
  if (!run) return;
  const token = document.querySelector("#compare-csrf input[name=csrfmiddlewaretoken]").value;
  for (const column of run.querySelectorAll(".compare-column[data-stream-url]")) {
    streamColumn(column, token);
  }
}

async function streamColumn(column, token) {
  let node = column.querySelector("li.message");
  let response = null;
  if (window.ReadableStream) {
    try {
      response = await fetch(column.dataset.streamUrl, {
        method: "POST",
        headers: { "X-CSRFToken": token },
        credentials: "same-origin",
      });
    } catch (error) {
      response = null;
    }
  }
  if (!response || !response.ok) {
    // 409: another tab (or the page before a reload) streams this column: follow it.
    node = await followReply(node);
    return columnEnded(column, node);
  }
  try {
    for await (const { event, data } of serverSentEvents(response)) {
      if (event === "start" || event === "done") {
        node = replaceHtml(node, data.html);
      } else if (event === "delta") {
        node.querySelector("[data-stream-content]").append(data.content);  // text, never HTML
        if (data.reasoning) {
          node.querySelector("details.reasoning").hidden = false;
          node.querySelector("[data-stream-reasoning]").append(data.reasoning);
        }
      }
    }
  } catch (error) {
    const note = document.createElement("p");
    note.className = "error";
    note.setAttribute("role", "alert");
    note.textContent = "The connection to the app was lost. Reload to see what was saved.";
    column.append(note);
    return;
  }
  columnEnded(column, node);
}

function columnEnded(column, node) {
  if (node.classList.contains("status-pending")) return;
  const choose = column.querySelector("form.choose");
  if (choose) choose.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCompareForm();
  streamCompareColumns();
});
