"""The tools editor in a browser: with JavaScript it adds slots and offers typed functions in
tool_choice; without it, each save draws one blank slot and the saved functions."""

import json

from playwright.sync_api import expect

from tests.helpers import sent_bodies

from .ui import new_conversation, reply, set_model, write_and_send

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TIME = {"type": "object", "properties": {"zone": {"type": "string"}}}


def slot_input(page, slot: int, part: str):
    return page.locator(f"#id_schema__tools_{slot}_{part}")


def test_add_another_function_and_pick_it_as_tool_choice(logged_in_page, demo_upstream):
    page = logged_in_page
    new_conversation(page)
    set_model(page, "openai/gpt-4o")
    page.get_by_role("button", name="Save parameters").click()

    slot_input(page, 0, "name").fill("get_weather")
    slot_input(page, 0, "parameters").fill(json.dumps(WEATHER))
    page.get_by_role("button", name="Add another function").click()
    expect(page.get_by_role("group", name="Function 2 (new)")).to_be_visible()
    expect(slot_input(page, 1, "name")).to_be_focused()
    slot_input(page, 1, "name").fill("get_time")
    slot_input(page, 1, "parameters").fill(json.dumps(TIME))
    slot_input(page, 1, "strict").check()
    choice = page.get_by_label("tool_choice", exact=True)
    choice.select_option(label="get_time")  # offered as it was typed

    write_and_send(page, "What time is it?")

    expect(reply(page).filter(has_text="get_time")).to_have_count(1)
    (body,) = sent_bodies(demo_upstream)
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
        {"type": "function", "function": {"name": "get_time", "parameters": TIME, "strict": True}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}


def test_without_javascript_a_saved_function_is_offered_and_a_new_slot_drawn(
    logged_in_no_js_page, demo_upstream
):
    page = logged_in_no_js_page
    new_conversation(page)
    set_model(page, "anthropic/claude-sonnet-4.5")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.get_by_role("button", name="Add another function")).to_be_hidden()

    slot_input(page, 0, "name").fill("get_weather")
    slot_input(page, 0, "parameters").fill(json.dumps(WEATHER))
    page.get_by_role("button", name="Save parameters").click()

    expect(slot_input(page, 0, "name")).to_have_value("get_weather")
    expect(page.get_by_role("group", name="Function 2 (new)")).to_be_visible()
    page.get_by_label("tool_choice", exact=True).select_option(label="get_weather")
    write_and_send(page, "Weather?")

    expect(reply(page).filter(has_text="get_weather")).to_have_count(1)
    (body,) = sent_bodies(demo_upstream)
    assert body["tools"] == [{"name": "get_weather", "input_schema": WEATHER}]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
