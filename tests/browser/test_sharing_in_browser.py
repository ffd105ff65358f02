"""A share link opened in a fresh, logged-out browser, continued, then revoked."""

import re

from playwright.sync_api import expect

from chat.models import Conversation

from .ui import expect_demo_reply, new_conversation, reply, write_and_send


def test_a_share_link_opens_logged_out_and_is_continued_in_another_account(
    logged_in_page, new_context, browser_problems, bob
):
    page = logged_in_page
    new_conversation(page)
    write_and_send(page, "Shared from the browser")
    expect_demo_reply(page, "Shared from the browser")

    page.get_by_text("Share", exact=True).click()
    page.get_by_role("button", name="Create share link").click()
    expect(page.get_by_role("heading", name="Shared links", level=1)).to_be_visible()
    link = page.locator(".share-url a").first
    share_url = link.get_attribute("href")
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]{32}/", share_url)

    visitor = browser_problems.watch(new_context()).new_page()
    visitor.goto(share_url)
    expect(visitor.get_by_role("heading", name="Shared from the browser", level=1)).to_be_visible()
    expect_demo_reply(visitor, "Shared from the browser")
    expect(visitor.get_by_role("link", name="Log in", exact=True)).to_be_visible()  # logged out
    expect(visitor.get_by_role("button", name="Send")).to_have_count(0)  # read-only
    inspector = reply(visitor).locator("details.inspector")
    inspector.locator(":scope > summary").click()
    expect(inspector.locator("pre.raw").first).to_contain_text('"Shared from the browser"')
    inspector.get_by_text("Get code", exact=True).click()
    expect(inspector.locator(".snippets")).to_contain_text("<YOUR_API_KEY>")

    visitor.get_by_role("link", name="Log in to continue this conversation").click()
    visitor.get_by_label("Username").fill("bob")
    visitor.get_by_label("Password").fill("bob-password-1")
    visitor.get_by_role("button", name="Log in").click()
    visitor.get_by_role("button", name="Make my copy").click()
    expect(visitor.get_by_role("heading", name="Shared from the browser", level=1)).to_be_visible()
    expect_demo_reply(visitor, "Shared from the browser")
    write_and_send(visitor, "Bob carries on")
    expect_demo_reply(visitor, "Bob carries on", reply(visitor).last)
    assert Conversation.objects.filter(owner=bob).count() == 1
    assert Conversation.objects.get(owner__username="alice").messages.count() == 2

    page.get_by_role("button", name="Revoke").click()
    expect(page.locator(".share .badge").first).to_have_text("Revoked")
    # Asked outside a page: a page load answered 404 would count as a console error.
    assert visitor.request.get(share_url).status == 404


def test_export_then_import_in_the_browser(logged_in_page, live_server, tmp_path):
    page = logged_in_page
    new_conversation(page)
    write_and_send(page, "Round trip through a file")
    expect_demo_reply(page, "Round trip through a file")

    page.get_by_text("Export", exact=True).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "round-trip-through-a-file.json"

    page.goto("/conversations/import/")
    page.get_by_label("Export file (JSON)").set_input_files(path)
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Round trip through a file", level=1)).to_be_visible()
    expect_demo_reply(page, "Round trip through a file")
    assert Conversation.objects.count() == 2

    page.goto("/conversations/import/")
    page.get_by_label("Export file (JSON)").set_input_files(
        files=[{"name": "bad.json", "mimeType": "application/json", "buffer": b"{oops"}]
    )
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was imported.")
    expect(page.get_by_role("alert")).to_contain_text("not valid JSON")
    assert Conversation.objects.count() == 2
