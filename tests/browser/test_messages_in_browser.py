"""The full message structure in a real browser: files, tools, roles, choices, logprobs.

The demo upstream answers each shape (README, "It also answers the full chat completions
shapes"): it describes the files it received, calls the tools it is given, returns `n`
choices and per-token log probabilities. The parameters that ask for them go in the
panel's Extra parameters; a ``pace`` fault slows a stream enough to look at it mid-way.
"""

import hashlib
import json
import math
import re

from playwright.sync_api import Locator, Page, expect

from chat.models import Message
from tests.helpers import PDF_BYTES, png_bytes, sent_bodies

from .conftest import log_in
from .ui import (
    DEMO_MODEL,
    expect_demo_reply,
    message_box,
    messages,
    new_conversation,
    reply,
    send_button,
    set_extra_parameters,
    set_model,
    user_message,
    write_and_send,
)

PACE = {"demo_fault": "pace=0.15"}  # seconds between chunks
FILE_URL = re.compile(r"/files/[0-9a-f-]{36}/$")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def start(page: Page, extra_parameters: str = "") -> None:
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    if extra_parameters:
        set_extra_parameters(page, extra_parameters)


def choose_role(page: Page, role: str) -> None:
    page.get_by_label("Role", exact=True).select_option(role)


def described(data: bytes, width: int, height: int) -> str:
    """What the demo says about a PNG it received intact."""
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"image/png {len(data)} bytes {width}x{height} sha256 {digest}"


def expect_loaded_image(image: Locator, src: re.Pattern) -> None:
    expect(image).to_have_attribute("src", src)
    # Loaded and decoded: not a broken-image icon.
    image.page.wait_for_function(
        "image => image.complete && image.naturalWidth > 0", arg=image.element_handle()
    )


def shade_of(logprob: float) -> int:
    """0 for a token the model was sure of (90% or more) to 4 (under 25%), as the legend says."""
    return sum(math.exp(logprob) < floor for floor in (0.9, 0.7, 0.5, 0.25))


def the_assistant_replies(page: Page) -> Locator:
    """The replies the model wrote (not those written by the user)."""
    return reply(page).filter(has_not=page.get_by_text("written by you", exact=True))


def reply_to(page: Page, question: str) -> Locator:
    """The demo's reply quoting `question` (once rendered: it quotes in a blockquote)."""
    return reply(page).filter(has=page.locator("blockquote", has_text=question))


def test_it_attaches_an_image_with_javascript_off_and_shows_its_thumbnail(
    logged_in_no_js_page, demo_upstream
):
    page = logged_in_no_js_page
    start(page)
    image = png_bytes(4, 3, seed=7)
    message_box(page).fill("What is in this picture?")
    page.get_by_label("Attach files").set_input_files(
        {"name": "grey.png", "mimeType": "image/png", "buffer": image}
    )

    send_button(page).click()

    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]+/#message-[0-9a-f-]+$"))
    question = user_message(page)
    expect(question).to_contain_text("What is in this picture?")
    thumbnail = question.locator("img.thumb")
    expect(thumbnail).to_have_attribute("alt", "grey.png")
    expect_loaded_image(thumbnail, FILE_URL)
    expect(reply(page)).to_contain_text(f"Received 1 attachment: {described(image, 4, 3)}")
    expect_demo_reply(page, "What is in this picture?")
    (body,) = sent_bodies(demo_upstream)
    text, picture = body["messages"][0]["content"]
    assert text == {"type": "text", "text": "What is in this picture?"}
    assert picture["type"] == "image_url"
    assert picture["image_url"]["url"].startswith("data:image/png;base64,")


# A file pasted into `target` (the message box) or dropped on it (the composer), as the
# browser would hand it over: the File is made in the page from the bytes given.
HAND_OVER_FILE = """([bytes, name, type, event, target]) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
    const init = { bubbles: true, cancelable: true };
    const handed = event === "paste"
        ? new ClipboardEvent("paste", { ...init, clipboardData: transfer })
        : new DragEvent("drop", { ...init, dataTransfer: transfer });
    target.dispatchEvent(handed);
    return handed.defaultPrevented;
}"""


def hand_over(page: Page, event: str, target: Locator, name: str, kind: str, data: bytes) -> None:
    taken = page.evaluate(HAND_OVER_FILE, [list(data), name, kind, event, target.element_handle()])
    assert taken  # the script took the file (the browser did not paste or open it)


def test_it_takes_a_pasted_image_and_a_dropped_pdf_and_streams_the_reply(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    start(page)
    image = png_bytes(5, 2, seed=40)
    files = page.get_by_label("Attach files")

    hand_over(page, "paste", message_box(page), "pasted.png", "image/png", image)

    preview = page.locator("[data-attach-preview] li")
    expect(preview).to_have_count(1)
    expect(preview).to_contain_text("pasted.png")
    expect_loaded_image(preview.locator("img.thumb"), re.compile(r"^data:image/png;base64,"))

    hand_over(page, "drop", page.locator(".composer"), "notes.pdf", "application/pdf", PDF_BYTES)

    expect(preview).to_have_count(2)
    expect(preview.nth(1)).to_contain_text("notes.pdf")
    expect(preview.nth(1).locator("img")).to_have_count(0)  # a thumbnail only for images
    assert files.evaluate("input => [...input.files].map(file => file.name)") == [
        "pasted.png",
        "notes.pdf",
    ]

    message_box(page).fill("Describe the pasted image")
    send_button(page).click()

    expect_demo_reply(page, "Describe the pasted image")
    expect(reply(page)).to_contain_text(f"Received 2 attachments: {described(image, 5, 2)}; ")
    expect(reply(page)).to_contain_text("application/pdf")
    question = user_message(page)
    expect_loaded_image(question.locator("img.thumb"), FILE_URL)
    expect(question.get_by_role("link", name="notes.pdf")).to_have_attribute("href", FILE_URL)
    expect(preview).to_have_count(0)  # sent: the composer is empty again
    assert files.evaluate("input => input.files.length") == 0
    (body,) = sent_bodies(demo_upstream)
    assert body["stream"] is True  # streamed into the page
    page.reload()
    expect_loaded_image(user_message(page).locator("img.thumb"), FILE_URL)


def test_it_shows_a_tool_call_while_it_streams_and_continues_with_its_result(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    # Paced so the call is seen mid-stream; max tokens keep the text reply after it short.
    start(page, json.dumps({"tools": [WEATHER], "parallel_tool_calls": False, **PACE}))
    page.get_by_label("Max tokens").fill("12")

    write_and_send(page, "Weather in Oslo?")

    # While it streams, the script draws the call from its fragments.
    streamed = page.wait_for_function(
        """() => {
            const card = document.querySelector("li.status-pending [data-stream-tools] .tool-card");
            const name = card?.querySelector(".tool-name").textContent;
            const id = card?.querySelector(".tool-id").textContent;
            return name && id ? [name, id, card.querySelector(".tool-arguments").textContent] : null;
        }""",
        polling="raf",
    ).json_value()
    answer = reply(page)
    expect(answer.locator(".generating")).to_have_count(0)  # done: the server's rendering
    (call,) = Message.objects.get(role=Message.Role.ASSISTANT).tool_calls
    call_id = call["id"]
    assert streamed[:2] == ["get_weather", f"id {call_id}"]
    assert call["function"]["arguments"].startswith(streamed[2])
    card = answer.locator(".tool-card")
    expect(card.locator(".tool-name")).to_have_text("get_weather")
    expect(card.locator("pre.tool-arguments")).to_have_text(
        re.compile(r'^\{\s*"city":\s*"demo"\s*\}$')
    )
    expect(card).to_contain_text(call_id)

    results = answer.locator("form.tool-results-form")
    results.get_by_label("Result of get_weather").fill('{"temp": 21}')
    results.get_by_role("button", name="Continue").click()

    tool_message = messages(page).filter(has=page.locator(".role", has_text="Tool"))
    expect(tool_message).to_contain_text(f"Result of tool call {call_id}")
    expect(tool_message).to_contain_text('{"temp": 21}')
    final = reply(page).filter(has_text="Tool result for")
    rendered = final.locator(".md:not(.streaming)")  # complete: rendered by the server
    expect(rendered).to_contain_text(f'Tool result for {call_id}: {{"temp": 21}}')
    expect(messages(page)).to_have_count(4)
    _, second = sent_bodies(demo_upstream)
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": call_id},
    ]


def test_it_adds_an_assistant_example_and_continues_from_a_prefill(logged_in_page, demo_upstream):
    page = logged_in_page
    start(page)
    add = page.get_by_role("button", name="Add without sending")
    for role, text in [
        ("user", "Name a colour"),
        ("assistant", "Blue."),
        ("user", "Name another colour"),
    ]:
        choose_role(page, role)
        message_box(page).fill(text)
        add.click()
        expect(messages(page).last).to_contain_text(text)

    choose_role(page, "assistant")
    write_and_send(page, "It is")

    roles = messages(page).locator(".message-meta .role")
    expect(roles).to_have_text(["User", "Assistant", "User", "Assistant", "Assistant"])
    written = reply(page).filter(has=page.get_by_text("written by you", exact=True))
    expect(written).to_have_count(2)
    expect(written.first).to_contain_text("Blue.")
    expect(written.last).to_contain_text("It is")
    answer = the_assistant_replies(page)
    expect_demo_reply(page, "Name another colour", answer)
    (body,) = sent_bodies(demo_upstream)
    assert body["messages"] == [
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Name another colour"},
        {"role": "assistant", "content": "It is"},
    ]


STREAMED_CHOICES = """() => {
    const first = document.querySelector("li.status-pending[data-message-url] [data-stream-content]");
    const second = document.querySelector('[data-stream-choice="1"] [data-stream-content]');
    const role = document.querySelector('[data-stream-choice="1"] .role');
    return first && second ? [first.textContent, second.textContent, role.textContent] : null;
}"""


def test_it_streams_two_choices_side_by_side_and_continues_with_the_second(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    start(page, '{"n": 2, "demo_fault": "pace=0.05"}')
    page.get_by_label("Max tokens").fill("12")

    write_and_send(page, "Two ways, please")

    texts = page.wait_for_function(
        f"""() => {{
            const texts = ({STREAMED_CHOICES})();
            return texts && texts[0].length > 12 && texts[1].length > 12 ? texts : null;
        }}""",
        polling="raf",
    ).json_value()
    first, second, second_role = texts
    # Each choice in its own message, not interleaved into one text.
    assert first.startswith("Choice 1: ") and "Choice 2" not in first
    assert second.startswith("Choice 2: ") and "Choice 1" not in second
    assert second_role == "Assistant · choice 2"

    # Done: the page reloads and shows both, as saved.
    main = reply(page)
    expect(main.locator(".message-meta .tag", has_text="Choice 1")).to_be_visible(timeout=10_000)
    other = main.locator("details.other-choices li.choice")
    expect(other).to_have_count(1)
    expect(other.locator(".role")).to_have_text("Choice 2")
    expect(other).to_contain_text("Choice 2:")
    other.get_by_role("button", name="Continue with choice 2").click()

    expect(reply(page).locator(".message-meta .tag", has_text="Choice 2")).to_be_visible()
    expect(reply(page).locator(".md").first).to_contain_text("Choice 2:")
    set_extra_parameters(page, "")
    page.get_by_label("Max tokens").fill("")
    write_and_send(page, "Go on from there")

    expect_demo_reply(page, "Go on from there", reply_to(page, "Go on from there"))
    chosen = Message.objects.get(choice_index=1)
    first_body, second_body = sent_bodies(demo_upstream)
    assert first_body["n"] == 2
    assert "n" not in second_body
    assert second_body["messages"] == [
        {"role": "user", "content": "Two ways, please"},
        {"role": "assistant", "content": chosen.content},
        {"role": "user", "content": "Go on from there"},
    ]
    assert chosen.content.startswith("Choice 2: ")


def test_it_shades_tokens_shows_alternatives_on_focus_and_a_table_without_javascript(
    logged_in_page, new_context, browser_problems, demo_upstream
):
    page = logged_in_page
    start(page, '{"logprobs": true, "top_logprobs": 2}')
    page.get_by_label("Max tokens").fill("8")

    write_and_send(page, "How sure are you?")

    tokens = reply(page).locator(".logprobs .tokens .tok")
    expect(tokens).to_have_count(8)
    entries = Message.objects.get(role=Message.Role.ASSISTANT).logprobs["content"]
    expected = [f"tok shade-{shade_of(entry['logprob'])}" for entry in entries]
    shown = tokens.evaluate_all(
        "spans => spans.map(span => [span.className, getComputedStyle(span).backgroundColor])"
    )
    assert [class_name for class_name, _ in shown] == expected
    backgrounds = {class_name: background for class_name, background in shown}
    assert "tok shade-0" in backgrounds and len(backgrounds) > 1  # the demo's draw: both kinds
    assert len(set(backgrounds.values())) == len(backgrounds)  # each shade its own colour
    popups = tokens.locator(".tok-pop")
    expect(popups.nth(1)).to_be_hidden()
    tokens.first.focus()
    page.keyboard.press("Tab")
    expect(tokens.nth(1)).to_be_focused()
    expect(popups.nth(1)).to_be_visible()
    expect(popups.first).to_be_hidden()
    expect(popups.nth(1).locator(".tok-alt")).to_have_count(2)

    # Without JavaScript (and without hover or focus) the table holds the same.
    no_js = browser_problems.watch(new_context(java_script_enabled=False)).new_page()
    log_in(no_js, "alice", "alice-password-1")
    no_js.goto(page.url)
    table = no_js.locator("details.logprobs-table")
    expect(table.locator("table")).to_be_hidden()
    table.locator("summary", has_text="Tokens as a table").click()
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(8)
    entry = entries[0]
    cells = rows.first.locator("td")
    expect(cells.nth(1)).to_contain_text(entry["token"].strip())
    expect(cells.nth(2)).to_have_text(f"{math.exp(entry['logprob']) * 100:.1f}%")
    expect(cells.nth(3).locator("code")).to_have_count(2)


def test_it_saves_an_edited_reply_as_a_new_branch_without_calling_the_model(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    start(page)
    write_and_send(page, "Say something")
    expect_demo_reply(page, "Say something")

    answer = reply(page)
    answer.locator("details.edit > summary").click()
    answer.get_by_label("Edited message").fill("Something **better**, by hand")
    answer.get_by_role("button", name="Save as a new branch").click()

    edited = reply(page)
    expect(edited.get_by_text("written by you", exact=True)).to_be_visible()
    expect(edited.locator(".md")).to_contain_text("Something better, by hand")
    expect(edited.get_by_role("group", name="Branch 2 of 2")).to_contain_text("2 / 2")
    expect(messages(page)).to_have_count(2)
    assert len(demo_upstream.chat_requests()) == 1


def test_it_shows_a_refusal_apart_from_the_content_while_and_after_it_streams(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    start(page, json.dumps(PACE))

    write_and_send(page, "Do the forbidden thing [refuse]")

    streaming = reply(page).locator("[data-stream-refusal-box]")
    expect(streaming).to_be_visible()
    expect(streaming.locator("[data-stream-refusal]")).to_contain_text("I can't help")
    refusal = reply(page).get_by_role("note").filter(has_text="Refusal")
    expect(refusal).to_contain_text("I can't help with that. (demo refusal)")
    expect(refusal).to_contain_text("the model declined")
    expect(reply(page).locator(".md")).to_have_count(0)  # no content, only the refusal
    assert Message.objects.get(role=Message.Role.ASSISTANT).content == ""
