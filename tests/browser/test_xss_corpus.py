"""The XSS corpus in every place the app shows text, seen by a real browser.

The payloads (tests/xss_corpus.py) go in through an imported file (model replies, reasoning,
user messages, titles, model ids, system prompts, stop sequences, extra parameters, every
field of a raw call) and through a real chat with the demo upstream (which echoes the message
into its Markdown reply). Then the chat page with every inspector open, the call pages, the
conversation list, the raw request editor, the usage and presets pages, the shared page and the
continue page are loaded, and on each:

* no dialog opens (every script payload calls alert);
* the page asks no host but this one for anything, and logs no console error (a script that
  got past the sanitizer but was blocked by the CSP logs one): the browser fixtures check both;
* the DOM holds no script but the app's own, no event-handler attribute, no script URL, and
  no frame, object, embed, base, meta refresh, stylesheet or style from the text.
"""

import json

from playwright.sync_api import Page, expect

from chat.models import ApiCall, Conversation, Preset, Share
from chat.sharing import share_create
from tests.xss_corpus import PAYLOADS

from .ui import expect_demo_reply, reply, write_and_send

# Finds markup the app did not write. Returns a description of each finding.
FIND_ACTIVE_CONTENT = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    const tag = el.tagName.toLowerCase();
    if (tag === 'script' && !(el.getAttribute('src') || '').startsWith('/static/js/')) {
      found.push('script: ' + el.outerHTML.slice(0, 80));
    }
    const appChart = tag === 'svg' && el.matches('main svg.usage-chart');  // drawn by the app
    if (['iframe', 'frame', 'object', 'embed', 'base', 'style', 'svg', 'math'].includes(tag)
        && !appChart) {
      found.push(tag + ': ' + el.outerHTML.slice(0, 80));
    }
    const action = el.getAttribute('action');
    if (tag === 'form' && action !== null && !action.startsWith('/')) {
      found.push('form: ' + el.outerHTML.slice(0, 80));
    }
    if (tag === 'meta' && el.httpEquiv) found.push('meta: ' + el.outerHTML.slice(0, 80));
    if (tag === 'link' && el.rel === 'stylesheet' && !el.href.includes('/static/css/')) {
      found.push('stylesheet: ' + el.href);
    }
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (name.startsWith('on')) found.push('handler ' + name + ' on ' + tag);
      if (name === 'style' || name === 'background' || name === 'srcset') {
        found.push(name + ' on ' + tag);
      }
      if (/^(javascript|vbscript|data):/.test(value) && name !== 'content') {
        found.push(name + '=' + attr.value.slice(0, 60) + ' on ' + tag);
      }
    }
  }
  return found;
}"""


def hostile_export() -> bytes:
    """One conversation with a payload everywhere, and one conversation per payload title."""
    messages = []
    for index, payload in enumerate(PAYLOADS):
        messages.append({"id": f"u{index}", "parent": f"a{index - 1}" if index else None,
                         "role": "user", "content": payload})  # fmt: skip
        call = {
            "request_body": json.dumps({"model": payload, "messages": [{"content": payload}]}),
            "request_headers": {"X-Payload": payload},
            "response_body": payload,
            "response_headers": {"X-Payload": payload},
            "http_status": 200,
            "error_kind": "http",
            "error_message": payload,
            "finish_reason": payload[:64],
            "stream_events": [{"at_ms": 1, "data": payload}],
            "assembled_response": {"choices": [{"message": {"content": payload}}]},
        }
        messages.append({
            "id": f"a{index}", "parent": f"u{index}", "role": "assistant",
            "status": "interrupted" if index % 2 else "complete",
            "content": payload, "reasoning": payload, "calls": [call],
        })  # fmt: skip
    corpus = {
        "title": "XSS corpus",
        "model": PAYLOADS[0],
        "system_prompt": "\n".join(PAYLOADS),
        "parameters": {
            "temperature": 0.5,
            "stop": [p for p in PAYLOADS if "\n" not in p][:4],
            "extra_params": {f"p{index}": payload for index, payload in enumerate(PAYLOADS)},
        },
        "messages": messages,
    }
    titled = [
        {"title": payload[:200], "model": payload[:200], "messages": []} for payload in PAYLOADS
    ]
    document = {"format": "playground.conversations", "version": 1,
                "conversations": [corpus, *titled]}  # fmt: skip
    return json.dumps(document).encode()


def open_everything(page: Page) -> None:
    """Open every <details>; older inspectors fetch their record then, one at a time.

    (One at a time because the live server's in-memory SQLite connection is shared by its
    threads and cannot serve dozens of requests at once; a real database can.)
    """
    page.evaluate("document.querySelectorAll('details:not([data-record-url])')"
                  ".forEach(d => { d.open = true; })")  # fmt: skip
    for inspector in page.locator("details[data-record-url]").all():
        inspector.evaluate("d => { d.open = true; }")
        expect(inspector.locator(".call-record")).to_be_attached()
    page.wait_for_load_state("networkidle")


def assert_inert(page: Page, dialogs: list[str]) -> None:
    open_everything(page)
    assert page.evaluate(FIND_ACTIVE_CONTENT) == [], page.url
    assert dialogs == [], page.url


def watch_dialogs(page: Page) -> list[str]:
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def test_no_payload_runs_or_fetches_anywhere_it_is_shown(
    logged_in_page, new_context, browser_problems, live_server
):
    page = logged_in_page
    dialogs = watch_dialogs(page)
    page.goto("/conversations/import/")
    page.get_by_label("Export file (JSON)").set_input_files(
        files=[{"name": "corpus.json", "mimeType": "application/json", "buffer": hostile_export()}]
    )
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text(f"Imported {len(PAYLOADS) + 1} conversations")).to_be_visible()
    assert_inert(page, dialogs)  # the list: every title and model id

    corpus = Conversation.objects.get(title="XSS corpus")
    page.goto(corpus.get_absolute_url() + "?all=1")  # every message, not just the latest
    expect(page.locator("li.message")).to_have_count(2 * len(PAYLOADS))
    assert "{{7*7}}" in page.content()  # shown as text, never evaluated
    assert_inert(page, dialogs)

    # A real chat: the demo upstream puts the message into its Markdown reply. (The stop
    # sequences are payloads too, and the demo would cut its reply at the first one.)
    page.get_by_label("Stop sequences").fill("")
    write_and_send(page, "\n\n".join(PAYLOADS[:30]))
    expect_demo_reply(page, "alert", reply(page).last)
    assert_inert(page, dialogs)
    write_and_send(page, "\n\n".join(PAYLOADS[30:]))
    expect_demo_reply(page, "alert", reply(page).last)
    assert_inert(page, dialogs)

    # Issue 5's pages: the raw editor holds every payload the conversation sends, the usage
    # page names each model a call sent, and presets carry their owner's names and values.
    page.goto(corpus.get_absolute_url() + "?raw=1")
    assert_inert(page, dialogs)
    ApiCall.objects.filter(conversation=corpus).update(model=PAYLOADS[1][:200])
    page.goto("/usage/")
    assert_inert(page, dialogs)
    for index, payload in enumerate(PAYLOADS[:20]):
        Preset.objects.create(owner=corpus.owner, name=f"{index} {payload}"[:100],
                              model=payload[:200], system_prompt=payload)  # fmt: skip
    page.goto("/presets/")
    assert_inert(page, dialogs)

    for call in ApiCall.objects.filter(conversation=corpus).order_by("id")[:: len(PAYLOADS) // 4]:
        page.goto(f"/calls/{call.public_id}/")
        assert_inert(page, dialogs)

    corpus.refresh_from_db()
    share = share_create(conversation=corpus, show_inspector=True, expires_in=None)
    page.goto("/shares/")
    assert_inert(page, dialogs)
    visitor = browser_problems.watch(new_context()).new_page()
    visitor_dialogs = watch_dialogs(visitor)
    visitor.goto(share.get_absolute_url())
    expect(visitor.locator("li.message")).to_have_count(2 * len(PAYLOADS) + 4)
    assert_inert(visitor, visitor_dialogs)
    page.goto(f"/s/{share.token}/continue/")
    assert_inert(page, dialogs)
    assert Share.objects.count() == 1
