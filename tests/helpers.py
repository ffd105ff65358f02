"""Small helpers shared by the tests (the fixtures live in conftest.py)."""

import json
import uuid

from django.test import Client
from django.urls import reverse

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


def sent_bodies(server) -> list[dict]:
    """The JSON bodies the demo upstream received for chat completions."""
    return [json.loads(recorded.body) for recorded in server.chat_requests()]
