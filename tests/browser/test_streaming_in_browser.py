"""Streamed replies in a real browser: growing text, Stop, reloads and broken streams.

With JavaScript on, Send posts the form to the stream endpoint and the script draws the
reply as it arrives; the page URL stays the same. The demo upstream is slowed down with a
fault spec in the Extra parameters (``pace=S``: S seconds between words) so there is time
to look at, stop or reload a reply while it streams.
"""

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from playwright.sync_api import Locator, Page, expect

from chat.demo_upstream import build_reply, word_pieces
from chat.models import ApiCall, Message
from tests.helpers import sent_bodies

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
    stop_button,
    user_message,
)

# The demo's reply is about 50 words: at 0.15-0.2 s a word it streams for 8-10 s.
SLOW = '{"demo_fault": "pace=0.15"}'
SLOWER = '{"demo_fault": "pace=0.2"}'
WHOLE_REPLY_MS = 15_000
LAST_LINE = "This is the offline demo upstream"  # the demo reply's last words


class Sample(NamedTuple):
    text: str | None  # the plain text received so far (None once rendered)
    generating: bool  # the "Generating…" indicator is still shown
    rendered: bool  # Markdown already rendered (only the final reply has <strong> in .md)


def sample(answer: Locator) -> Sample:
    """What a streaming reply shows, read in one go (the script may replace it any time)."""
    seen = answer.evaluate(
        """li => ({
            text: li.querySelector("[data-stream-content]")?.textContent ?? null,
            generating: li.querySelector(".generating")?.checkVisibility() ?? false,
            rendered: li.querySelector(".md:not(.streaming) strong") !== null,
        })"""
    )
    return Sample(**seen)


def wait_until_text_grows_past(page: Page, length: int) -> None:
    page.wait_for_function(
        """length => {
            const text = document.querySelector("li.status-pending [data-stream-content]");
            return text !== null && text.textContent.length > length;
        }""",
        arg=length,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll `condition` (e.g. a database query) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        time.sleep(0.05)
    return value


def the_reply() -> Message:
    return Message.objects.get(role=Message.Role.ASSISTANT)


def full_reply_for(demo_upstream, index: int = 0) -> str:
    """The whole text the demo upstream would have streamed for its `index`-th request."""
    return build_reply(sent_bodies(demo_upstream)[index]).content


def start_slow_reply(page: Page, text: str, extra_parameters: str) -> Locator:
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    set_extra_parameters(page, extra_parameters)
    message_box(page).fill(text)
    send_button(page).click()
    answer = reply(page)
    expect(answer.locator("[data-stream-content]")).to_contain_text("Demo reply")
    return answer


def expect_ready_for_the_next_message(page: Page) -> None:
    expect(message_box(page)).to_have_value("")
    expect(send_button(page)).to_be_enabled()
    expect(stop_button(page)).to_be_hidden()


def test_it_shows_the_reply_growing_while_it_streams(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    url = page.url
    set_model(page, DEMO_MODEL)
    set_extra_parameters(page, SLOW)
    message_box(page).fill("Stream to me, slowly")

    send_button(page).click()

    expect(user_message(page)).to_contain_text("Stream to me, slowly")
    answer = reply(page)
    expect(answer.get_by_text("Generating…")).to_be_visible()
    expect(message_box(page)).to_have_value("")
    expect(page.get_by_role("button", name="Sending…")).to_be_disabled()
    expect(stop_button(page)).to_be_visible()
    expect(answer.locator("[data-stream-content]")).not_to_be_empty()
    expect(answer.locator(".badge")).to_have_text("Streaming")  # not "Waiting for the model"
    first = sample(answer)
    wait_until_text_grows_past(page, len(first.text))
    second = sample(answer)
    assert first.generating and second.generating
    assert len(second.text) > len(first.text) and second.text.startswith(first.text)
    # While it streams the text is shown as it came, Markdown not yet rendered.
    assert first.text.startswith("**Demo") and not second.rendered

    expect(answer.locator("strong", has_text="Demo reply")).to_be_visible(timeout=WHOLE_REPLY_MS)
    code = answer.locator("pre code.language-python")
    expect(code).to_contain_text("def echo_length(message: str) -> int:")
    expect(code.locator("span", has_text="def").first).to_be_visible()  # highlighted
    expect(answer.get_by_text("Generating…")).to_have_count(0)
    expect(answer.locator(".badge")).to_have_count(0)  # complete: no status badge
    expect(answer.locator("details.inspector")).to_contain_text("HTTP 200")
    expect(page.get_by_role("heading", level=1)).to_have_text("Stream to me, slowly")
    expect(page).to_have_title("Stream to me, slowly · Playground")
    recent = page.get_by_role("navigation", name="Recent conversations")
    expect(recent.locator("li[aria-current]")).to_have_text("Stream to me, slowly")
    expect_ready_for_the_next_message(page)
    assert page.url == url  # streamed into the page, no navigation

    shown = answer.inner_text()
    assert LAST_LINE in shown and "**" not in shown
    page.reload()
    expect_demo_reply(page, "Stream to me, slowly")
    assert reply(page).inner_text() == shown
    assert the_reply().status == Message.Status.COMPLETE


def test_stop_keeps_the_partial_reply_marked_stopped(logged_in_page, demo_upstream):
    page = logged_in_page
    answer = start_slow_reply(page, "Stop me halfway", SLOWER)

    stop_button(page).click()

    expect(answer.locator(".badge")).to_have_text("Stopped", timeout=2_000)
    notice = answer.get_by_role("status")
    expect(notice).to_contain_text("Stopped by the user; the text received so far is kept.")
    expect(notice.get_by_role("button", name="Retry")).to_be_visible()
    expect(answer.locator("strong", has_text="Demo reply")).to_be_visible()  # kept, rendered
    expect(answer.get_by_text("Generating…")).to_have_count(0)
    expect(answer).not_to_contain_text(LAST_LINE)
    expect(answer.get_by_role("alert")).to_have_count(0)  # stopping is not an error
    expect_ready_for_the_next_message(page)
    kept = the_reply()
    assert kept.status == Message.Status.STOPPED
    full = full_reply_for(demo_upstream)
    assert kept.content and len(kept.content) < len(full) and full.startswith(kept.content)
    assert ApiCall.objects.get().error_kind == "stopped"

    shown = answer.inner_text()
    page.reload()
    expect(reply(page).locator(".badge")).to_have_text("Stopped")
    expect(reply(page).get_by_role("button", name="Retry")).to_be_visible()
    assert reply(page).inner_text() == shown
    assert the_reply().status == Message.Status.STOPPED


def test_the_message_and_stop_show_before_the_model_answers(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    set_extra_parameters(page, '{"demo_fault": "delay=8"}')  # 8 s before even the status line
    message_box(page).fill("Anyone there?")

    send_button(page).click()

    answer = reply(page)
    expect(answer.locator(".badge")).to_have_text("Waiting for the model", timeout=1_000)
    expect(messages(page).first).to_contain_text("Anyone there?")
    expect(message_box(page)).to_have_value("")
    stop_button(page).click()
    expect(answer.locator(".badge")).to_have_text("Stopped", timeout=2_000)  # not after 8 s
    expect(answer).to_contain_text("Stopped by the user before the model answered.")
    expect_ready_for_the_next_message(page)
    assert the_reply().status == Message.Status.STOPPED


def test_deleting_the_conversation_in_another_tab_ends_the_stream_here(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    answer = start_slow_reply(page, "Delete me while you talk", SLOWER)

    other_tab = page.context.new_page()
    other_tab.goto(page.url.split("#")[0] + "delete/")
    other_tab.get_by_role("button", name="Delete conversation").click()

    expect(page.get_by_role("alert")).to_have_text(
        "This conversation was deleted while its reply was being generated.", timeout=2_000
    )
    expect(stop_button(page)).to_be_hidden()
    expect(send_button(page)).to_be_enabled()
    expect(answer).to_contain_text("Demo reply")  # what arrived stays in view
    expect(answer.locator(".badge")).to_have_text("Deleted")
    expect(answer.locator(".generating")).to_have_count(0)
    assert not Message.objects.exists() and not ApiCall.objects.exists()


def test_a_reload_mid_stream_keeps_what_arrived(logged_in_page, demo_upstream):
    page = logged_in_page
    answer = start_slow_reply(page, "Reload me halfway", SLOWER)
    # The stream saves the text about once a second: wait for a save with a few words.
    wait_for(lambda: "Demo reply" in the_reply().content)
    shown_before_reload = sample(answer).text

    page.reload()

    # The page shows the text saved so far at once, then follows the reply until the
    # server has marked it interrupted (the old page's stream hung up on unload).
    expect(reply(page)).to_contain_text("Demo reply")
    answer = reply(page)
    expect(answer.locator(".badge")).to_have_text("Interrupted", timeout=5000)
    assert the_reply().status == Message.Status.INTERRUPTED
    error = answer.get_by_role("alert")
    expect(error).to_contain_text("The reply is incomplete.")
    expect(error).to_contain_text("The browser went away before the reply finished")
    expect(answer.locator("strong", has_text="Demo reply")).to_be_visible()
    expect(answer).not_to_contain_text(LAST_LINE)
    interrupted = the_reply()
    full = full_reply_for(demo_upstream)
    assert interrupted.content.startswith(shown_before_reload)  # nothing shown was lost
    assert len(interrupted.content) < len(full) and full.startswith(interrupted.content)

    # Retry asks again, without the slow pace.
    set_extra_parameters(page, "")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.get_by_label("Extra parameters (JSON)")).to_have_value("")
    reply(page).get_by_role("button", name="Retry").click()

    expect_demo_reply(page, "Reload me halfway")
    expect(reply(page).get_by_role("alert")).to_have_count(0)
    expect(reply(page).locator(".badge")).to_have_count(0)
    expect(reply(page)).to_contain_text(LAST_LINE)
    expect(messages(page)).to_have_count(2)
    assert "demo_fault" not in sent_bodies(demo_upstream)[-1]
    statuses = Message.objects.filter(role=Message.Role.ASSISTANT).order_by("created")
    assert [message.status for message in statuses] == [
        Message.Status.INTERRUPTED,  # kept, as a sibling of the retry
        Message.Status.COMPLETE,
    ]


def test_a_broken_stream_shows_an_explicit_error_and_keeps_the_text(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    set_extra_parameters(page, '{"demo_fault": "reset_after=5"}')
    message_box(page).fill("Break off after five words")
    # Every state of the reply the page ever shows, so "never complete" can be checked.
    page.evaluate(
        """() => {
            window.replyStates = [];
            const note = () => document.querySelectorAll("#message-list li.assistant")
                .forEach((li) => window.replyStates.push(li.className));
            new MutationObserver(note).observe(
                document.getElementById("message-list"), { childList: true, subtree: true });
        }"""
    )

    send_button(page).click()

    answer = reply(page)
    expect(answer.locator(".badge")).to_have_text("Interrupted")
    error = answer.get_by_role("alert")
    expect(error).to_contain_text("The reply is incomplete.")
    expect(error).to_contain_text("broke mid-stream")
    expect(error.get_by_role("button", name="Retry")).to_be_visible()
    # Five words arrived: "**Demo reply** from `demo/echo`. You", rendered.
    expect(answer.locator("strong", has_text="Demo reply")).to_be_visible()
    expect(answer.locator(".md code")).to_have_text("demo/echo")
    expect(answer).not_to_contain_text("You wrote:")
    expect_ready_for_the_next_message(page)
    states = page.evaluate("window.replyStates")
    assert states and not any("status-complete" in state for state in states), states
    broken = the_reply()
    assert broken.status == Message.Status.INTERRUPTED
    assert broken.content == "".join(word_pieces(full_reply_for(demo_upstream))[:5])
    assert ApiCall.objects.get().error_kind == "broken"

    shown = answer.inner_text()
    page.reload()
    expect(reply(page).locator(".badge")).to_have_text("Interrupted")
    assert reply(page).inner_text() == shown


def test_send_after_a_streamed_reply_continues_the_conversation(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)

    message_box(page).fill("First question")
    send_button(page).click()
    expect_demo_reply(page, "First question")
    expect_ready_for_the_next_message(page)
    message_box(page).fill("Second question")
    send_button(page).click()

    expect(messages(page)).to_have_count(4)
    expect_demo_reply(page, "Second question", answer=reply(page).nth(1))
    expect_demo_reply(page, "First question", answer=reply(page).nth(0))
    expect(user_message(page).nth(0)).to_contain_text("First question")
    expect(user_message(page).nth(1)).to_contain_text("Second question")
    expect(page.get_by_role("heading", level=1)).to_have_text("First question")
    expect_ready_for_the_next_message(page)
    first_reply = Message.objects.filter(role=Message.Role.ASSISTANT).earliest("created")
    assert first_reply.content.startswith("**Demo reply**")
    first_body, second_body = sent_bodies(demo_upstream)
    assert first_body["messages"] == [{"role": "user", "content": "First question"}]
    assert second_body["messages"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": first_reply.content},
        {"role": "user", "content": "Second question"},
    ]

    page.reload()
    expect(messages(page)).to_have_count(4)
    expect_demo_reply(page, "Second question", answer=reply(page).nth(1))


def test_the_header_totals_count_each_streamed_reply_without_a_reload(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    totals = page.locator("#conversation-totals")
    expect(totals).to_be_hidden()  # no call yet

    for question in ("First question", "Second question"):
        message_box(page).fill(question)
        send_button(page).click()
        expect_ready_for_the_next_message(page)

    calls = ApiCall.objects.all()
    prompt, completion = (
        sum(getattr(call, f) for call in calls) for f in ("prompt_tokens", "completion_tokens")
    )
    expect(totals).to_contain_text(f"2 calls · {prompt} in, {completion} out")
    shown = totals.inner_text()
    page.reload()
    expect(totals).to_have_text(shown)  # as a reload shows it


def test_a_page_reloaded_mid_stream_shows_the_interruption_without_another_reload(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    start_slow_reply(page, "Reload me once", SLOWER)

    page.reload()
    wait_for(lambda: the_reply().status == Message.Status.INTERRUPTED)

    expect(reply(page).locator(".badge")).to_have_text("Interrupted", timeout=2_000)


def test_the_page_follows_a_long_reply_unless_the_reader_scrolls_up(logged_in_page, demo_upstream):
    page = logged_in_page
    page.set_viewport_size({"width": 1280, "height": 420})  # the reply outgrows the window
    answer = start_slow_reply(page, "Follow me down", SLOW)

    grown = len(sample(answer).text)
    wait_until_text_grows_past(page, grown + 80)
    expect(stop_button(page)).to_be_in_viewport()  # followed: Stop is still at hand

    page.evaluate("window.scrollTo(0, 0)")  # the reader goes back up to read
    wait_until_text_grows_past(page, grown + 160)
    assert page.evaluate("window.scrollY") == 0  # not pulled back down
    expect(answer.locator("strong", has_text="Demo reply")).to_be_visible(timeout=WHOLE_REPLY_MS)
    assert page.evaluate("window.scrollY") == 0


def test_a_lost_connection_shows_what_was_saved_and_the_next_message_goes_through(
    cuttable_page, demo_upstream
):
    page = cuttable_page
    answer = start_slow_reply(page, "Lose me halfway", SLOWER)

    page.proxy.cut()  # the network drops, mid-stream

    expect(page.get_by_role("alert")).to_contain_text("The connection to the app was lost")
    wait_for(lambda: the_reply().status == Message.Status.INTERRUPTED)
    expect(answer.locator(".badge")).to_have_text("Interrupted")  # no reload needed
    expect(answer.get_by_role("button", name="Retry")).to_be_visible()
    # The first message named the conversation, though `done` never came.
    expect(page.locator(".chat-header h1")).to_have_text("Lose me halfway")
    expect(page.locator(".sidebar li[aria-current] a")).to_have_text("Lose me halfway")
    assert the_reply().content.startswith("**Demo reply**")  # what arrived is kept...
    expect(answer.locator("strong", has_text="Demo reply")).to_be_visible()  # ...and rendered

    message_box(page).fill("Are you back?")  # a new submit, not the broken one again
    send_button(page).click()
    expect(messages(page)).to_have_count(4)
    expect(page.locator("li.status-pending")).to_have_count(0, timeout=WHOLE_REPLY_MS)
    expect_ready_for_the_next_message(page)
    assert Message.objects.filter(content="Are you back?").exists()
    replies = Message.objects.filter(role=Message.Role.ASSISTANT).order_by("created")
    assert [r.status for r in replies] == [Message.Status.INTERRUPTED, Message.Status.COMPLETE]
