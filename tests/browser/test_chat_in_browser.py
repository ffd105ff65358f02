"""Chatting in a real browser: what the user sees, with and without JavaScript.

With JavaScript, Send streams the reply into the page (the URL does not change); without
it, the form posts and the app redirects to the new message. Streaming itself (growing
text, Stop, broken streams) is in test_streaming_in_browser.py.
"""

import re

from playwright.sync_api import expect

from chat.models import ApiCall, Message
from tests.helpers import sent_bodies

from .ui import (
    DEMO_MODEL,
    expect_demo_reply,
    message_box,
    messages,
    new_conversation,
    open_inspector,
    record_posts,
    reply,
    send_button,
    set_model,
    user_message,
    wire_section,
    write_and_send,
)


def test_it_signs_up_chats_inspects_the_call_and_copies_the_python_code(
    page, live_server, demo_upstream
):
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password:", exact=True).fill("correct-horse-battery-9")
    page.get_by_label("Password confirmation").fill("correct-horse-battery-9")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/conversations/$"))
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()

    page.get_by_role("main").get_by_role("button", name="New conversation").click()
    model = page.get_by_label("Model", exact=True).input_value()
    write_and_send(page, "Hello from the browser")

    expect(user_message(page)).to_contain_text("Hello from the browser")
    expect_demo_reply(page, "Hello from the browser")
    expect(page.get_by_role("heading", name="Hello from the browser", level=1)).to_be_visible()

    inspector = open_inspector(page)
    request = wire_section(inspector, "Request")
    # The bytes as sent first; the indented copy only when asked for, and labelled.
    (sent,) = ApiCall.objects.values_list("request_body", flat=True)
    request_body = request.locator("pre.raw")
    expect(request_body).to_be_visible()
    assert request_body.text_content() == sent
    expect(request_body).to_contain_text('"content":"Hello from the browser"')
    formatted = request.locator("pre.json")
    expect(formatted).to_be_hidden()
    request.locator("summary", has_text="Formatted (not the bytes sent)").click()
    expect(formatted).to_contain_text('"content": "Hello from the browser"')
    expect(formatted).to_contain_text(f'"model": "{model}"')
    expect(formatted).to_contain_text('"stream": true')
    response = wire_section(inspector, "Response")
    expect(response.get_by_text("HTTP 200", exact=True)).to_be_visible()
    expect(
        response.get_by_text(re.compile(r"^\d+ server-sent events, as received$"))
    ).to_be_visible()
    expect(response.locator(".stream-events code").last).to_have_text("[DONE]")
    response.locator("summary", has_text="Formatted: the chunks assembled").click()
    assembled = response.locator("details.formatted pre.json")
    expect(assembled).to_contain_text('"object": "chat.completion"')
    expect(assembled).to_contain_text("Demo reply")
    latency = inspector.locator("dl.metrics > div").filter(has_text="Latency").locator("dd")
    expect(latency).to_have_text(re.compile(r"^\d+ ms$"))

    inspector.get_by_role("link", name="Open this call: Get code").click()
    expect(page.get_by_role("heading", name="Get code")).to_be_visible()
    snippets = {}
    for language in ("Python", "JavaScript", "cURL"):
        snippet = page.locator("details.snippet").filter(
            has=page.locator("summary", has_text=re.compile(f"^{language}$"))
        )
        if snippet.get_attribute("open") is None:
            snippet.locator("summary").click()
        code = snippet.locator("pre")
        expect(code).to_be_visible()
        expect(code).to_contain_text("<YOUR_API_KEY>")
        expect(code).to_contain_text(demo_upstream.base_url)
        expect(code).to_contain_text("Hello from the browser")
        snippets[language] = code.text_content()

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.get_by_role("button", name="Copy Python").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == snippets["Python"]


def test_it_chats_with_javascript_disabled(logged_in_no_js_page, demo_upstream):
    page = logged_in_no_js_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)

    write_and_send(page, "No scripts here")

    # No script to stream: the form posts to /send/ and the app redirects to the reply.
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]+/#message-[0-9a-f-]+$"))
    expect(user_message(page)).to_contain_text("No scripts here")
    expect_demo_reply(page, "No scripts here")
    inspector = reply(page).locator("details.inspector")
    request = wire_section(inspector, "Request")
    expect(request.locator("pre.raw")).to_be_hidden()
    inspector.locator(":scope > summary", has_text="Inspect").click()  # no script needed
    expect(request.locator("pre.raw")).to_contain_text('"content":"No scripts here"')
    request.locator("summary", has_text="Formatted (not the bytes sent)").click()
    expect(request.locator("pre.json")).to_contain_text('"content": "No scripts here"')
    expect(wire_section(inspector, "Response").get_by_text("HTTP 200", exact=True)).to_be_visible()
    # The copy buttons need JavaScript, so they stay hidden; the downloads work without.
    expect(inspector.get_by_role("button", name="Copy request body")).to_be_hidden()
    expect(inspector.get_by_role("link", name="Download request body")).to_be_visible()
    assert len(demo_upstream.chat_requests()) == 1
    (body,) = sent_bodies(demo_upstream)
    assert "stream" not in body  # the plain form path asks for the whole reply at once


def test_it_sends_the_parameters_and_shows_the_reasoning_collapsed(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    page.get_by_label("Temperature").fill("0.7")
    page.get_by_label("Extra parameters (JSON)").fill('{"enable_thinking": true}')

    write_and_send(page, "Think first")

    answer = reply(page)
    expect_demo_reply(page, "Think first")
    reasoning = answer.locator("details.reasoning")
    expect(reasoning.locator("summary")).to_have_text("Reasoning")
    expect(reasoning.get_by_text("I will quote the last user message")).to_be_hidden()
    reasoning.locator("summary").click()
    expect(reasoning.get_by_text("I will quote the last user message")).to_be_visible()
    parameters = answer.locator("li")
    expect(parameters.filter(has_text="enable_thinking")).to_have_text("enable_thinking: true")
    expect(parameters.filter(has_text="temperature")).to_have_text("temperature: 0.7")
    # The panel keeps what was sent: as typed while the page stays, as saved after a reload.
    expect(page.get_by_label("Temperature")).to_have_value("0.7")
    expect(page.get_by_label("Extra parameters (JSON)")).to_have_value('{"enable_thinking": true}')
    page.reload()
    expect_demo_reply(page, "Think first")
    expect(page.get_by_label("Temperature")).to_have_value("0.7")
    # enable_thinking is in the demo model's schema: after a reload it has its own field.
    expect(page.get_by_label("enable_thinking")).to_have_value("true")
    expect(page.get_by_label("Extra parameters (JSON)")).to_have_value("")

    (body,) = sent_bodies(demo_upstream)
    assert body["model"] == DEMO_MODEL
    assert body["temperature"] == 0.7
    assert body["enable_thinking"] is True
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "Think first"}]


def test_it_shows_an_upstream_failure_and_retries_after_the_model_is_fixed(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    new_conversation(page)
    set_model(page, "demo/fault:status=400")

    write_and_send(page, "Will this work?")

    expect(user_message(page)).to_contain_text("Will this work?")
    error = reply(page).get_by_role("alert")
    expect(error).to_contain_text("No reply.")
    expect(error).to_contain_text("The upstream answered 400 (Bad Request): Body validation error!")
    expect(reply(page).get_by_text("Failed", exact=True)).to_be_visible()
    retry = error.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()

    set_model(page, DEMO_MODEL)
    page.get_by_role("button", name="Save parameters").click()
    expect(page).to_have_url(re.compile(r"#parameters$"))
    expect(page.get_by_label("Model", exact=True)).to_have_value(DEMO_MODEL)
    reply(page).get_by_role("button", name="Retry").click()

    expect_demo_reply(page, "Will this work?")
    expect(reply(page).get_by_role("alert")).to_have_count(0)
    expect(reply(page).get_by_role("button", name="Retry")).to_have_count(0)
    expect(messages(page)).to_have_count(2)
    assert [body["model"] for body in sent_bodies(demo_upstream)] == [
        "demo/fault:status=400",
        DEMO_MODEL,
    ]


def test_it_refuses_a_temperature_of_5_and_keeps_the_message(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, "local/no-schema")  # the generic 0 to 2 range, checked by the browser too
    page.get_by_role("button", name="Save parameters").click()
    temperature = page.get_by_label("Temperature")
    temperature.fill("5")
    posts = record_posts(page, "/stream/", "/send/")

    # The browser checks the range itself (the input has max="2") and does not submit.
    write_and_send(page, "A message worth keeping")
    assert temperature.evaluate("input => input.validity.rangeOverflow")
    expect(message_box(page)).to_have_value("A message worth keeping")
    assert posts == {"/stream/": [], "/send/": []}

    # A browser that does not check (or a crafted post) gets the server's field error: the
    # stream endpoint refuses it (400), and the script falls back to the plain form post.
    page.locator("#chat-form").evaluate("form => { form.noValidate = true; }")
    send_button(page).click()

    field_error = page.locator(".field").filter(has=temperature).get_by_role("alert")
    expect(field_error).to_have_text("Ensure this value is less than or equal to 2.")
    expect(page.get_by_label("Temperature")).to_have_value("5")
    expect(message_box(page)).to_have_value("A message worth keeping")
    expect(page.get_by_role("region", name="Messages").get_by_role("listitem")).to_have_count(0)
    assert [len(posts["/stream/"]), len(posts["/send/"])] == [1, 1]
    assert demo_upstream.chat_requests() == []
    assert not Message.objects.exists()


def test_it_creates_one_generation_when_send_is_double_clicked(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    message_box(page).fill("Only once, please")
    posts = record_posts(page, "/stream/", "/send/")

    send_button(page).dblclick()

    expect_demo_reply(page, "Only once, please")
    expect(messages(page)).to_have_count(2)
    page.reload()  # what the server saved, not only what the script drew
    expect_demo_reply(page, "Only once, please")
    expect(messages(page)).to_have_count(2)
    assert [len(posts["/stream/"]), len(posts["/send/"])] == [1, 0]
    assert len(demo_upstream.chat_requests()) == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1
    assert ApiCall.objects.count() == 1


def test_saving_parameters_or_a_preset_keeps_the_message_being_written(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    new_conversation(page)
    message_box(page).fill("A question I am still writing")
    page.get_by_label("Temperature").fill("0.4")
    page.get_by_role("button", name="Save parameters").click()

    expect(page).to_have_url(re.compile(r"#parameters$"))
    expect(message_box(page)).to_have_value("A question I am still writing")
    expect(page.get_by_label("Temperature")).to_have_value("0.4")

    page.get_by_label("Temperature").fill("0.9")
    page.locator("details.presets > summary").click()
    page.get_by_label("Preset name").fill("Warm")
    page.get_by_role("button", name="Save as preset").click()

    expect(page.get_by_text("Saved preset “Warm”.")).to_be_visible()
    expect(message_box(page)).to_have_value("A question I am still writing")
    expect(page.get_by_label("Temperature")).to_have_value("0.9")
    assert demo_upstream.chat_requests() == []
