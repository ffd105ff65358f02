"""Older replies' inspectors load their call record when opened; the last one is inline."""

from playwright.sync_api import expect

from .ui import expect_demo_reply, new_conversation, reply, wire_section, write_and_send


def test_an_older_reply_loads_its_record_when_its_inspector_opens(logged_in_page):
    page = logged_in_page
    new_conversation(page)
    write_and_send(page, "First question")
    expect_demo_reply(page, "First question")
    write_and_send(page, "Second question")
    expect_demo_reply(page, "Second question", reply(page).last)
    page.reload()

    older = reply(page).first.locator("details.inspector")
    expect(older.locator(".call-record")).to_have_count(0)  # not in the page until opened
    expect(reply(page).last.locator("details.inspector .call-record")).to_be_attached()
    older.locator(":scope > summary").click()

    body = wire_section(older, "Request").locator("pre.raw")
    expect(body).to_contain_text('"content":"First question"')
    expect(body).not_to_contain_text("Second question")
    expect(older.get_by_role("button", name="Copy request body")).to_be_visible()


def test_without_javascript_an_older_inspector_links_to_the_call(logged_in_no_js_page):
    page = logged_in_no_js_page
    new_conversation(page)
    for text in ("First question", "Second question"):
        page.get_by_label("Message", exact=True).fill(text)
        page.get_by_role("button", name="Send", exact=True).click()
        expect_demo_reply(page, text, reply(page).last)

    older = reply(page).first.locator("details.inspector")
    older.locator(":scope > summary").click()
    older.get_by_role("link", name="Open this call: request, response and Get code").click()

    expect(page.get_by_role("heading", name="Get code")).to_be_visible()
    expect(page.locator("pre.raw").first).to_contain_text("First question")
