import json

from playwright.sync_api import Page

from tests.helpers import png_bytes

from .conftest import log_in
from .test_messages_in_browser import WEATHER, start
from .ui import write_and_send


def test_screens(page: Page, live_server, alice, tmp_path):
    log_in(page, live_server, alice)
    page.set_viewport_size({"width": 1440, "height": 1000})
    start(page, json.dumps({"tools": [WEATHER], "parallel_tool_calls": False}))
    page.get_by_label("Attach files").set_input_files(
        [{"name": "cat.png", "mimeType": "image/png", "buffer": png_bytes(60, 40)}]
    )
    write_and_send(page, "What is the weather, and what is in this image?")
    page.wait_for_selector(".tool-results-form")
    page.screenshot(path="/tmp/screen-tools.png", full_page=True)
    start(page, json.dumps({"n": 2, "logprobs": True, "top_logprobs": 2}))
    write_and_send(page, "Two answers please")
    page.wait_for_selector(".other-choices")
    page.screenshot(path="/tmp/screen-choices.png", full_page=True)
