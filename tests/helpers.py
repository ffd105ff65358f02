"""Small helpers shared by the tests (the fixtures live in conftest.py)."""

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.test import Client
from django.urls import reverse

from chat import limits
from chat.models import Conversation


def form_data(content: str = "Hello there", **overrides) -> dict:
    """What the chat form posts when the user only types a message."""
    data = {
        "content": content,
        "idempotency_key": uuid.uuid4().hex,
        "model": "demo/echo",
        "system_prompt": "",
        "temperature": "",
        "max_tokens": "",
        "top_p": "",
        "stop": "",
        "extra_params": "",
    }
    data.update(overrides)
    return data


def panel(model: str = "demo/echo", **overrides) -> dict:
    """The parameter panel's cleaned data, as the services take it: nothing set."""
    return {
        "model": model,
        "system_prompt": "",
        "temperature": None,
        "top_p": None,
        "max_tokens": None,
        "stop": [],
        "extra_params": {},
        **overrides,
    }


def send(client: Client, conversation: Conversation, content: str = "Hello there", **overrides):
    url = reverse("message_send", args=[conversation.public_id])
    return client.post(url, form_data(content, **overrides))


def start_with_room_in_the_minute(seconds: float = 5) -> None:
    """Wait for the next clock minute when fewer than `seconds` of this one are left.

    The call limit keeps one count per user per clock minute (chat/limits.py): a test
    whose calls straddle a minute's end would see the count start again.
    """
    left = limits.WINDOW_SECONDS - time.time() % limits.WINDOW_SECONDS
    if left < seconds:
        time.sleep(left + 0.05)


def sent_bodies(server) -> list[dict]:
    """The JSON bodies the demo upstream received for chat completions."""
    return [json.loads(recorded.body) for recorded in server.chat_requests()]


def headers_as_recorded(received) -> dict[str, str]:
    """The headers the demo upstream received, as the call's record must show them.

    The key is redacted, and Host is left out: the HTTP library writes it from the URL.
    """
    headers = {name: value for name, value in received.headers.items() if name != "Host"}
    return {**headers, "Authorization": "Bearer [redacted]"}


def on_event_loop(scenario):
    """Run `scenario()` (a coroutine function) on a fresh event loop in its own thread.

    Its own thread, because Playwright's sync API may keep a loop running in this one.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, scenario()).result()
