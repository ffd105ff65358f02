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

function setUpCopyButtons(root) {
  for (const button of root.querySelectorAll("button.copy[hidden]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      copyFrom(button).then(() => flash(button, "Copied"), () => flash(button, "Copy failed"));
    });
  }
}

function csrfToken(form) {
  return form.querySelector("input[name=csrfmiddlewaretoken]").value;
}

// Splits a text/event-stream into {event, data} objects as bytes arrive.
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

function insertHtml(list, html) {
  const template = document.createElement("template");
  template.innerHTML = html;  // rendered and escaped by the server's templates
  const nodes = [...template.content.children];
  list.append(...nodes);
  nodes.forEach((node) => setUpCopyButtons(node));
  return nodes;
}

function replaceHtml(node, html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  const replacement = template.content.firstElementChild;
  node.replaceWith(replacement);
  setUpCopyButtons(replacement);
  return replacement;
}

// A `delta` event into the pending reply `node`: its text, never HTML. With several
// choices (n > 1), refusals or tool calls, `data.choices` has each choice's part; choices
// after the first get a node of their own, made from the reply's, after it.
function showDelta(node, data) {
  if (!data.choices) {
    appendText(node, data);
    return;
  }
  for (const [index, part] of Object.entries(data.choices)) {
    appendText(choiceNode(node, Number(index)), part);
  }
}

function appendText(node, part) {
  node.querySelector(".badge").textContent = "Streaming";  // no longer "Waiting for the model"
  if (part.content) node.querySelector("[data-stream-content]").append(part.content);
  if (part.reasoning) {
    node.querySelector("details.reasoning").hidden = false;
    node.querySelector("[data-stream-reasoning]").append(part.reasoning);
  }
  if (part.refusal) {
    node.querySelector("[data-stream-refusal-box]").hidden = false;
    node.querySelector("[data-stream-refusal]").append(part.refusal);
  }
  for (const fragment of part.tool_calls || []) appendToolCall(node, fragment);
}

// Tool-call fragments are joined by their index: the first names the call, the rest
// carry pieces of its arguments.
function appendToolCall(node, fragment) {
  const box = node.querySelector("[data-stream-tools]");
  let card = box.querySelector(`[data-tool-index="${Number(fragment.index)}"]`);
  if (!card) {
    card = document.createElement("div");
    card.className = "tool-card";
    card.dataset.toolIndex = String(Number(fragment.index));
    const title = document.createElement("p");
    const label = document.createElement("strong");
    label.textContent = "Tool call ";
    const name = document.createElement("code");
    name.className = "tool-name";
    const id = document.createElement("span");
    id.className = "muted small tool-id";
    title.append(label, name, " ", id);
    const args = document.createElement("pre");
    args.className = "tool-arguments";
    card.append(title, args);
    box.append(card);
  }
  const fn = fragment.function || {};
  if (fn.name) card.querySelector(".tool-name").textContent += fn.name;
  if (fragment.id) card.querySelector(".tool-id").textContent = `id ${fragment.id}`;
  if (fn.arguments) card.querySelector(".tool-arguments").append(fn.arguments);
}

function choiceNode(first, index) {
  if (index === 0) return first;
  const list = first.parentElement;
  let node = list.querySelector(`[data-stream-choice="${index}"]`);
  if (!node) {
    node = first.cloneNode(true);
    node.removeAttribute("id");
    node.removeAttribute("data-message-url");
    node.dataset.streamChoice = String(index);
    node.querySelectorAll("[data-stream-content], [data-stream-reasoning], [data-stream-refusal], [data-stream-tools]")
      .forEach((element) => { element.textContent = ""; });
    const role = node.querySelector(".role");
    if (role) role.textContent = `Assistant · choice ${index + 1}`;
    const siblings = list.querySelectorAll("[data-stream-choice]");
    (siblings.length ? siblings[siblings.length - 1] : first).after(node);
  }
  return node;
}

class ChatStreamer {
  constructor(form) {
    this.form = form;
    this.list = document.getElementById("message-list");
    this.send = form.querySelector("button.primary");
    this.stop = form.querySelector("button.stop");
    this.message = form.querySelector("textarea[name=content]");
    this.replyNode = null;
    this.replyId = null;
    this.aborter = null;
    this.stop.addEventListener("click", () => this.requestStop());
    // Leaving the page: hang up at once, so the server saves and marks the reply now.
    window.addEventListener("pagehide", () => this.aborter?.abort());
  }

  // Streams what `form` posts to `url`: a message (the chat form), a regeneration (the chat
  // form, sent by a Regenerate button) or an edited message (that message's edit form).
  async submit(url, form, submitter, { clearMessage }) {
    this.form.querySelectorAll(".stream-error").forEach((note) => note.remove());  // old news
    this.setBusy(true);
    this.activeForm = form;
    this.clearMessage = clearMessage;
    this.aborter = new AbortController();
    let response;
    try {
      response = await fetch(url, {
        signal: this.aborter.signal,
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRFToken": csrfToken(form) },
        credentials: "same-origin",
      });
    } catch (error) {
      return this.fail("Could not reach the app. Your message is still in the box; try again.");
    }
    if (response.status === 400) {
      // Invalid input: the plain form path saves nothing and shows the errors.
      submitPlainly(form, submitter);
      return;
    }
    if (!response.ok) {
      // 409: this submit already has a reply; 404 and the like: show the page's truth.
      window.location.reload();
      return;
    }
    let done = false;
    try {
      for await (const { event, data } of serverSentEvents(response)) {
        this.handle(event, data);
        if (event === "done" || event === "gone") done = true;
      }
    } catch (error) {
      // The connection broke: handled below, as a stream that ended without `done`.
    }
    if (!done) await this.lost();
  }

  // The stream ended without `done` (see followLostReply).
  async lost() {
    if (!this.replyNode) {
      // Not started as far as this page knows: sending again with the same idempotency key
      // either starts it or finds the reply the app already has.
      return this.fail(
        "The connection to the app was lost. Your message is still in the box; try again.");
    }
    // Still busy until the reply is final: the next message must follow all of it.
    this.stop.hidden = true;
    // This submit's key is used: the next message is a new submit.
    this.form.querySelector("input[name=idempotency_key]").value = newIdempotencyKey();
    this.replyNode = await followLostReply(this.replyNode, this.form.querySelector(".composer"),
      "The connection to the app was lost. The reply above is as the app saved it.");
    this.setBusy(false);
  }

  handle(event, data) {
    if (event === "start") {
      document.getElementById("empty-conversation")?.remove();
      this.dropBranchAfter(data.after);
      const following = this.followingWhile(() => {
        const nodes = insertHtml(this.list, data.html);
        this.replyNode = nodes[nodes.length - 1];
      });
      this.replyId = data.reply_id;
      this.showTitle(data.title);  // a first message names the conversation
      if (this.clearMessage) {
        this.message.value = "";
        clearAttachments(this.form);
      }
      this.stop.hidden = false;
      // Following keeps the message box and Stop in view (a tall composer: the reply may
      // start above the fold); otherwise show where the reply is.
      if (!following) this.replyNode.scrollIntoView({ block: "nearest" });
    } else if (event === "delta") {
      this.followingWhile(() => showDelta(this.replyNode, data));
    } else if (event === "done") {
      if (data.reload) {  // several choices: the page shows them all, as saved
        window.location.reload();
        return;
      }
      this.followingWhile(() => { this.replyNode = replaceHtml(this.replyNode, data.html); });
      this.showTitle(data.title);  // renamed meanwhile, perhaps in another tab
      const totals = document.getElementById("conversation-totals");
      if (totals && data.totals_html) replaceHtml(totals, data.totals_html);
      this.form.querySelector("input[name=idempotency_key]").value = data.next_idempotency_key;
      this.setBusy(false);
    } else if (event === "gone") {
      markDeleted(this.replyNode);
      this.fail(data.message);
    }
  }

  showTitle(title) {
    document.querySelector(".chat-header h1").textContent = title;
    document.title = `${title} · Playground`;
    const recent = document.querySelector(".sidebar li[aria-current] a");
    if (recent) recent.textContent = title;
  }

  // Runs `grow` (more of the reply); if the message box and Stop were in view before, they
  // stay in view after: the page follows the reply unless the reader scrolled up. Returns
  // whether it was following.
  followingWhile(grow) {
    const composer = this.form.querySelector(".composer");
    const following = composer.getBoundingClientRect().bottom <= window.innerHeight + 1;
    grow();
    if (following) composer.scrollIntoView({ block: "end" });
    return following;
  }

  // The new messages start a branch after `after` (null: at the root): what the page shows
  // after that point is the branch being left, still one "‹ ›" click away.
  dropBranchAfter(after) {
    const anchor = after ? document.getElementById(`message-${after}`) : null;
    if (after && !anchor) return;
    const nodes = [...this.list.children];
    const keep = anchor ? nodes.indexOf(anchor) + 1 : 0;
    nodes.slice(keep).forEach((node) => node.remove());
  }

  async requestStop() {
    if (!this.replyId) return;
    this.stop.disabled = true;
    const url = this.form.dataset.stopUrlTemplate.replace(
      "00000000-0000-0000-0000-000000000000", this.replyId);
    await fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken(this.form) },
      credentials: "same-origin",
    });
    // The stream ends with the stopped message, rendered by the server.
  }

  fail(text) {
    this.form.querySelector(".composer").append(streamError(text));
    this.setBusy(false);
  }

  setBusy(busy) {
    this.send.disabled = busy;
    this.send.textContent = busy ? "Sending…" : "Send";
    this.stop.hidden = !busy || !this.replyId;
    this.stop.disabled = false;
    if (!busy) {
      this.replyId = null;
      this.stop.hidden = true;
      delete this.form.dataset.submitting;
      if (this.activeForm) delete this.activeForm.dataset.submitting;
    }
  }
}

// A reply still being generated by another request (another tab, or the page
// before a reload): show its progress, and its final state once it ends.
function followPendingReplies() {
  for (const node of document.querySelectorAll("li.status-pending[data-message-url]")) {
    // A compare page's columns are compare.js's: it streams or follows each of them.
    if (!node.closest(".compare-column")) followReply(node);
  }
}

// Resolves with the reply's node once it is no longer pending (or gone).
async function followReply(node) {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (!node.isConnected) return node;
    const response = await fetch(node.dataset.messageUrl, { credentials: "same-origin" });
    if (!response.ok) return node;
    node = replaceHtml(node, await response.text());
    if (!node.classList.contains("status-pending")) return node;
  }
}

// The stream broke between the app and this page (the network, a sleeping laptop, a proxy,
// a restart). The app keeps what arrived and marks the reply when it notices: say so in
// `container`, then follow the reply `node` to what was saved. Resolves with its node.
async function followLostReply(node, container, text) {
  container.append(streamError(text));
  try {
    return await followReply(node);
  } catch (error) {
    return node;  // the app is unreachable for now: the note says so
  }
}

// The reply's conversation was deleted while it streamed (in another tab, perhaps): the
// text shown is all there was, and nothing more of it will come.
function markDeleted(node) {
  node.classList.remove("status-pending");
  node.querySelector(".generating")?.remove();
  const badge = node.querySelector(".badge");
  if (badge) badge.textContent = "Deleted";
}

function streamError(text) {
  const note = document.createElement("p");
  note.className = "error stream-error";
  note.setAttribute("role", "alert");
  note.textContent = text;
  return note;
}

// 32 hex digits, as the server's keys (crypto.randomUUID needs HTTPS; this does not).
function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

// Hands a submit the script took over back to the browser (with the button's formaction).
function submitPlainly(form, submitter) {
  form.dataset.plain = "true";
  if (submitter) form.requestSubmit(submitter);
  else HTMLFormElement.prototype.submit.call(form);
}

function setUpChatForm() {
  const form = document.getElementById("chat-form");
  if (!form) return;
  const streamer = form.dataset.streamUrl && window.ReadableStream ? new ChatStreamer(form) : null;
  form.addEventListener("submit", (event) => {
    if (form.dataset.plain) return;  // handed back to the browser: a normal submit
    // One submit, one generation: the server also checks the idempotency key.
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "true";
    const submitter = event.submitter;
    const sendsMessage = !submitter || submitter.classList.contains("primary");
    // Send streams from the form's URL; Regenerate (a button of this form) from its own.
    const streamUrl = sendsMessage ? form.dataset.streamUrl : submitter.dataset.streamUrl;
    if (streamer && streamUrl) {
      event.preventDefault();
      streamer.submit(streamUrl, form, submitter, { clearMessage: sendsMessage });
    } else if (submitter && submitter.dataset.busyLabel) {
      submitter.textContent = submitter.dataset.busyLabel;
    }
  });
  // Edit forms (one per message, also in messages added by a stream) and tool results
  // stream too; an edited assistant message asks nothing of the model (no stream URL).
  document.addEventListener("submit", (event) => {
    const edit = event.target;
    const streams = edit.classList.contains("edit-form") || edit.classList.contains("tool-results-form");
    if (!streamer || !streams || !edit.dataset.streamUrl || edit.dataset.plain) return;
    event.preventDefault();
    if (edit.dataset.submitting || form.dataset.submitting) return;
    edit.dataset.submitting = form.dataset.submitting = "true";
    streamer.submit(edit.dataset.streamUrl, edit, event.submitter, { clearMessage: false });
  });
  // A page restored from the back/forward cache must not stay "Sending…".
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) window.location.reload();
  });
  const message = form.querySelector("textarea[name=content]");
  message?.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit(form.querySelector("button.primary"));
    }
  });
}

// An older reply's inspector holds only a link; its record loads when it is opened.
async function loadCallRecord(details) {
  const placeholder = details.querySelector(":scope > .lazy-record");
  if (!placeholder || details.dataset.loading) return;
  details.dataset.loading = "true";
  try {
    const response = await fetch(details.dataset.recordUrl, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    replaceHtml(placeholder, await response.text());
  } catch (error) {
    placeholder.append(` (could not load it here: ${error.message})`);
  } finally {
    delete details.dataset.loading;
  }
}

document.addEventListener("toggle", (event) => {
  const details = event.target;
  if (details.open && details.matches("details.inspector[data-record-url]")) {
    loadCallRecord(details);
  }
}, true);  // toggle does not bubble

// Attaching files: the file input works alone; with this, images pasted into the message
// box or files dropped on the composer join it, and what is attached is listed, images
// as thumbnails (data: URLs: the page loads nothing from elsewhere).
function setUpAttachments() {
  const form = document.getElementById("chat-form");
  const input = form?.querySelector("input[type=file][name=attachments]");
  if (!input || !window.DataTransfer) return;
  const composer = form.querySelector(".composer");
  const add = (files) => {
    const all = new DataTransfer();
    for (const file of input.files) all.items.add(file);
    for (const file of files) all.items.add(file);
    input.files = all.files;
    showAttachments(form);
  };
  input.addEventListener("change", () => showAttachments(form));
  form.querySelector("textarea[name=content]")?.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return;
    event.preventDefault();
    add(files);
  });
  composer.addEventListener("dragover", (event) => {
    if ([...event.dataTransfer.types].includes("Files")) {
      event.preventDefault();
      composer.classList.add("dropping");
    }
  });
  composer.addEventListener("dragleave", () => composer.classList.remove("dropping"));
  composer.addEventListener("drop", (event) => {
    if (!event.dataTransfer.files.length) return;
    event.preventDefault();
    composer.classList.remove("dropping");
    add([...event.dataTransfer.files]);
  });
}

function showAttachments(form) {
  const input = form.querySelector("input[type=file][name=attachments]");
  const list = form.querySelector("[data-attach-preview]");
  if (!input || !list) return;
  list.replaceChildren();
  [...input.files].forEach((file, index) => {
    const item = document.createElement("li");
    if (file.type.startsWith("image/")) {
      const image = document.createElement("img");
      image.className = "thumb";
      image.alt = file.name;
      const reader = new FileReader();
      reader.addEventListener("load", () => { image.src = reader.result; });
      reader.readAsDataURL(file);
      item.append(image);
    }
    const name = document.createElement("span");
    name.textContent = ` ${file.name} (${Math.ceil(file.size / 1024)} KB) `;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.addEventListener("click", () => {
      const kept = new DataTransfer();
      [...input.files].forEach((other, at) => { if (at !== index) kept.items.add(other); });
      input.files = kept.files;
      showAttachments(form);
    });
    item.append(name, remove);
    list.append(item);
  });
}

function clearAttachments(form) {
  const input = form.querySelector("input[type=file][name=attachments]");
  if (input) input.value = "";
  showAttachments(form);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons(document);
  followPendingReplies();
  setUpChatForm();
  setUpAttachments();
});
