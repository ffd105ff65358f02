"""The parameter panel follows the model: its schema's fields appear as the model changes."""

import json
import re

from playwright.sync_api import expect

from tests.helpers import sent_bodies

from .ui import new_conversation, set_model, write_and_send


def field_help(page, label):
    return page.locator(".field").filter(has=page.get_by_label(label, exact=True)).locator("small")


def test_switching_models_swaps_the_panel_and_sends_only_what_was_set(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    new_conversation(page)
    set_model(page, "anthropic/claude-sonnet-4.5")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.get_by_label("thinking", exact=True)).to_be_visible()
    expect(field_help(page, "Temperature")).to_contain_text("Range 0–1.")
    page.get_by_label("Temperature").fill("0.4")

    set_model(page, "openai/gpt-4o")
    page.get_by_label("Model", exact=True).press("Tab")  # "change" fires: the panel follows

    expect(page.get_by_label("frequency_penalty", exact=True)).to_be_visible()
    expect(page.get_by_label("thinking", exact=True)).to_have_count(0)
    expect(field_help(page, "Temperature")).to_contain_text("Range 0–2.")
    expect(page.get_by_label("Temperature")).to_have_value("0.4")  # typed values are kept
    page.get_by_label("frequency_penalty", exact=True).fill("0.5")
    page.get_by_label("parallel_tool_calls", exact=True).select_option("false")

    write_and_send(page, "Hello GPT")

    expect(page.locator("li.message")).to_have_count(2)
    expect(page.locator("li.assistant.status-complete")).to_have_count(1)
    (body,) = sent_bodies(demo_upstream)
    assert {key: value for key, value in body.items() if key != "messages"} == {
        "model": "openai/gpt-4o",
        "temperature": 0.4,
        "frequency_penalty": 0.5,
        "parallel_tool_calls": False,
        "stream": True,
    }


def test_the_model_browser_filters_as_you_type_and_picks_a_model(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    page.get_by_text("Browse models").click()
    page.get_by_label("Filter models").fill("deep")

    rows = page.locator(".model-browser li[data-model-id]")
    expect(rows.filter(visible=True)).to_have_count(1)
    page.get_by_role("button", name="DeepSeek R1").click()

    expect(page.get_by_label("Model", exact=True)).to_have_value("deepseek/deepseek-r1")
    expect(page.get_by_label("min_p", exact=True)).to_be_visible()


def test_without_javascript_save_parameters_shows_the_new_models_panel(
    logged_in_no_js_page, demo_upstream
):
    page = logged_in_no_js_page
    new_conversation(page)
    set_model(page, "deepseek/deepseek-r1")
    page.get_by_role("button", name="Save parameters").click()

    expect(page.get_by_label("repetition_penalty", exact=True)).to_be_visible()
    page.get_by_label("Temperature").fill("1.5")
    page.get_by_label("min_p", exact=True).fill("2")
    write_and_send(page, "Too much")

    error = page.locator(".field").filter(has=page.get_by_label("min_p", exact=True))
    expect(error.get_by_role("alert")).to_contain_text("min_p: must be at most 0.999.")
    page.get_by_label("Send anyway").check()
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("li.assistant.status-complete")).to_have_count(1)
    (body,) = sent_bodies(demo_upstream)
    assert (body["min_p"], body["temperature"]) == (2.0, 1.5)


def test_a_raw_request_is_sent_as_written_and_the_form_takes_what_maps(
    logged_in_page, demo_upstream
):
    page = logged_in_page
    new_conversation(page)
    page.get_by_role("link", name="Raw request", exact=True).click()
    editor = page.get_by_label("Raw request body (JSON)")
    prefilled = json.loads(editor.input_value())
    assert prefilled["messages"][-1] == {"role": "user", "content": ""}
    raw = {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": "Raw from the browser"}],
        "temperature": 0.25,
        "x_custom": [1, 2],
    }
    editor.fill(json.dumps(raw))

    page.get_by_role("button", name="Send raw body").click()

    expect(page.locator("li.assistant.status-complete")).to_have_count(1)
    expect(page.locator("li.user")).to_contain_text("Raw from the browser")
    assert sent_bodies(demo_upstream) == [raw]
    expect(page.get_by_label("Temperature")).to_have_value("0.25")
    expect(page.get_by_label("Extra parameters (JSON)")).to_have_value(re.compile("x_custom"))
