"""Branches and compare runs in a real browser, with and without JavaScript."""

import re

from playwright.sync_api import Locator, Page, expect

from chat.models import CompareRun, Conversation, Message
from tests.helpers import sent_bodies

from .ui import (
    DEMO_MODEL,
    expect_demo_reply,
    messages,
    new_conversation,
    record_posts,
    reply,
    send_button,
    set_model,
    user_message,
    write_and_send,
)

FAULT_MODEL = "demo/fault:status=500"
# Paced so each column is visibly still streaming while the others run.
PACED = '{"demo_fault": "pace=0.05"}'


def branch_controls(message: Locator) -> Locator:
    return message.get_by_role("group", name=re.compile(r"^Branch \d+ of \d+$"))


def regenerate(page: Page, answer: Locator) -> None:
    answer.get_by_role("button", name="Regenerate").click()


def edit(page: Page, message: Locator, text: str) -> None:
    details = message.locator("details.edit")
    if details.get_attribute("open") is None:  # a form with errors is shown open
        details.locator("summary").click()
    message.get_by_label("Edited message").fill(text)
    message.get_by_role("button", name="Send as a new branch").click()


def the_conversation() -> Conversation:
    return Conversation.objects.get()


def test_it_regenerates_edits_and_switches_branches_while_streaming(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    url = page.url
    set_model(page, DEMO_MODEL)
    write_and_send(page, "First question")
    expect_demo_reply(page, "First question")
    expect(send_button(page)).to_be_enabled()
    posts = record_posts(page, "/regenerate/stream/", "/edit/stream/")

    # Regenerate with a changed parameter from the panel: a second reply beside the first.
    page.get_by_label("Max tokens").fill("4")
    regenerate(page, reply(page))
    expect(branch_controls(reply(page))).to_contain_text("2 / 2")
    expect(reply(page).locator("strong", has_text="Demo reply")).to_be_visible()
    expect(reply(page).locator("blockquote")).to_have_count(0)  # cut at 4 words
    expect(reply(page).locator("details.inspector > summary")).to_contain_text("length")
    expect(messages(page)).to_have_count(2)
    assert len(posts["/regenerate/stream/"]) == 1
    assert sent_bodies(demo_upstream)[-1]["max_tokens"] == 4
    assert page.url == url  # streamed into the page

    # Back to the first reply: a plain form, and the page remembers the choice.
    branch_controls(reply(page)).get_by_role("button", name="Previous branch").click()
    expect(branch_controls(reply(page))).to_contain_text("1 / 2")
    expect_demo_reply(page, "First question")
    page.reload()
    expect(branch_controls(reply(page))).to_contain_text("1 / 2")

    # Edit the question: a new branch from there, streamed; the old one stays.
    page.get_by_label("Max tokens").fill("")
    page.get_by_role("button", name="Save parameters").click()
    edit(page, user_message(page), "Second question")
    expect_demo_reply(page, "Second question")
    expect(branch_controls(user_message(page))).to_contain_text("2 / 2")
    expect(messages(page)).to_have_count(2)
    assert len(posts["/edit/stream/"]) == 1
    expect(send_button(page)).to_be_enabled()

    branch_controls(user_message(page)).get_by_role("button", name="Previous branch").click()
    expect(user_message(page)).to_contain_text("First question")
    # Switching shows the newest leaf under the chosen message: the regenerated reply.
    expect(branch_controls(reply(page))).to_contain_text("2 / 2")
    assert Message.objects.count() == 5  # 2 questions, 3 replies: nothing lost

    # Delete the second question's branch: only it goes.
    branch_controls(user_message(page)).get_by_role("button", name="Next branch").click()
    expect(user_message(page)).to_contain_text("Second question")
    first_in_list = user_message(page)
    first_in_list.locator("details.delete-branch > summary").click()
    first_in_list.get_by_role("button", name="Delete this message and everything after it").click()
    expect(user_message(page)).to_contain_text("First question")
    expect(branch_controls(user_message(page))).to_have_count(0)
    assert Message.objects.count() == 3


def test_it_switches_and_edits_branches_without_javascript(logged_in_no_js_page, demo_upstream):
    page = logged_in_no_js_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    write_and_send(page, "Plain question")
    expect_demo_reply(page, "Plain question")

    regenerate(page, reply(page))
    expect(branch_controls(reply(page))).to_contain_text("2 / 2")
    branch_controls(reply(page)).get_by_role("button", name="Previous branch").click()
    expect(branch_controls(reply(page))).to_contain_text("1 / 2")

    edit(page, user_message(page), "   ")
    expect(user_message(page).get_by_text("Write a message first.")).to_be_visible()
    edit(page, user_message(page), "Plain question, edited")
    expect_demo_reply(page, "Plain question, edited")
    expect(branch_controls(user_message(page))).to_contain_text("2 / 2")
    assert the_conversation().current_leaf.parent.content == "Plain question, edited"


def fill_column(page: Page, number: int, model: str, extra: str = "") -> Locator:
    column = page.get_by_role("group", name=f"Column {number}")
    column.get_by_label("Model", exact=True).fill(model)
    if extra:
        column.locator("details > summary").click()
        column.get_by_label("Extra parameters (JSON)").fill(extra)
    return column


def column_on_run_page(page: Page, number: int) -> Locator:
    return page.get_by_role("listitem", name=re.compile(rf"^Column {number}: "))


def test_it_compares_models_side_by_side_streaming_each_column(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    write_and_send(page, "Some context first")
    expect_demo_reply(page, "Some context first")
    posts = record_posts(page, "/stream/")

    page.get_by_role("link", name="Compare models…").click()
    page.get_by_label("Prompt", exact=True).fill("Which is best?")
    fill_column(page, 1, "demo/alpha", PACED)
    fill_column(page, 2, FAULT_MODEL)
    fill_column(page, 3, "demo/gamma", PACED)
    page.get_by_role("button", name="Compare").click()

    expect(page.get_by_role("heading", name="Compared side by side")).to_be_visible()
    alpha, fault, gamma = (column_on_run_page(page, number) for number in (1, 2, 3))
    # Both good columns stream at the same time, each into its own column.
    expect(alpha.get_by_text("Generating…")).to_be_visible()
    expect(gamma.get_by_text("Generating…")).to_be_visible()
    expect(alpha.locator("[data-stream-content]")).not_to_be_empty()
    expect(gamma.locator("[data-stream-content]")).not_to_be_empty()
    expect_demo_reply(page, "Which is best?", alpha.locator("li.message"))
    expect_demo_reply(page, "Which is best?", gamma.locator("li.message"))
    expect(fault.get_by_text("No reply.")).to_be_visible()
    expect(fault.get_by_role("button", name="Retry")).to_be_visible()
    assert len(posts["/stream/"]) == 3  # one stream per column
    for column, model in ((alpha, "demo/alpha"), (gamma, "demo/gamma")):
        expect(column.get_by_role("heading")).to_contain_text(model)
        expect(column.locator("dl.parameters-shown")).to_contain_text("demo_fault")
        metrics = column.locator("dl.column-metrics")
        expect(metrics).to_contain_text(re.compile(r"Latency\s*\d+ ms"))
        expect(metrics).to_contain_text(re.compile(r"Tokens\s*\d+"))
        expect(metrics).to_contain_text(re.compile(r"Cost\s*\$0\.\d+"))
        expect(column.locator("details.inspector")).to_contain_text("HTTP 200")
    # Each column's request carried the conversation so far and its own model.
    bodies = {body["model"]: body for body in sent_bodies(demo_upstream)[1:]}
    assert bodies["demo/gamma"]["messages"][0]["content"] == "Some context first"

    gamma.get_by_role("button", name="Continue with this reply").click()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]+/#message-[0-9a-f-]+$"))
    expect(branch_controls(reply(page).last)).to_contain_text("3 / 3")
    expect(user_message(page).last).to_contain_text("Which is best?")
    assert CompareRun.objects.get().chosen.compare_column.model == "demo/gamma"

    page.get_by_role("link", name="Compared side by side: see all the replies").click()
    expect(column_on_run_page(page, 3)).to_contain_text("The conversation continues from this")


def test_it_compares_without_javascript(logged_in_no_js_page, demo_upstream):
    page = logged_in_no_js_page
    new_conversation(page)
    page.get_by_role("link", name="Compare models…").click()
    page.get_by_label("Prompt", exact=True).fill("No scripts")
    fill_column(page, 1, "demo/alpha")
    fill_column(page, 2, "demo/beta")
    page.get_by_role("button", name="Compare").click()

    expect(page.get_by_role("heading", name="Compared side by side")).to_be_visible()
    for number in (1, 2):
        expect_demo_reply(page, "No scripts", column_on_run_page(page, number).locator("li"))
    column_on_run_page(page, 1).get_by_role("button", name="Continue with this reply").click()
    expect_demo_reply(page, "No scripts", reply(page))
    expect(branch_controls(reply(page))).to_contain_text("1 / 2")


def test_stop_ends_one_column_and_the_others_go_on(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    page.get_by_role("link", name="Compare models…").click()
    page.get_by_label("Prompt", exact=True).fill("Stop one of us")
    fill_column(page, 1, "demo/slow", '{"demo_fault": "pace=0.3"}')
    fill_column(page, 2, "demo/steady", PACED)
    page.get_by_role("button", name="Compare").click()

    slow, steady = column_on_run_page(page, 1), column_on_run_page(page, 2)
    expect(slow.locator("[data-stream-content]")).not_to_be_empty()
    slow.get_by_role("button", name="Stop").click()

    expect(slow.locator(".badge")).to_have_text("Stopped")
    expect(slow.get_by_role("button", name="Stop")).to_have_count(0)
    expect_demo_reply(page, "Stop one of us", steady.locator("li.message"))
    expect(steady.locator(".badge")).to_have_count(0)
    expect(slow.get_by_role("button", name="Continue with this reply")).to_be_visible()
    statuses = dict(
        Message.objects.filter(role="assistant").values_list("compare_column__model", "status")
    )
    assert statuses == {"demo/slow": "stopped", "demo/steady": "complete"}


def test_a_lost_connection_leaves_each_column_as_the_app_saved_it(cuttable_page, demo_upstream):
    page = cuttable_page
    new_conversation(page)
    page.get_by_role("link", name="Compare models…").click()
    page.get_by_label("Prompt", exact=True).fill("Lose us both")
    for number in (1, 2):
        fill_column(page, number, f"demo/col{number}", '{"demo_fault": "pace=0.2"}')
    page.get_by_role("button", name="Compare").click()
    columns = [column_on_run_page(page, number) for number in (1, 2)]
    for column in columns:
        expect(column.locator("[data-stream-content]")).not_to_be_empty()

    page.proxy.cut()  # the network drops while both stream

    for column in columns:
        lost = column.get_by_role("alert").filter(has_text="The connection to the app was lost")
        expect(lost).to_be_visible()
        expect(column.locator(".badge")).to_have_text("Interrupted")  # followed, no reload
        expect(column.get_by_role("button", name="Retry")).to_be_visible()
        expect(column.get_by_role("button", name="Stop")).to_have_count(0)
    statuses = set(Message.objects.filter(role="assistant").values_list("status", flat=True))
    assert statuses == {Message.Status.INTERRUPTED}
