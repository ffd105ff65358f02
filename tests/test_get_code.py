"""Get code: each snippet, run for real, sends exactly the stored request body."""

import json
import shutil
import subprocess
import sys

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from chat.models import ApiCall, Conversation, Share
from chat.snippets import KEY_PLACEHOLDER, all_snippets
from tests.conftest import TEST_API_KEY
from tests.helpers import send

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(alice_client, alice, upstream):
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")
    send(
        alice_client,
        conversation,
        "Hello, ünïcode ✓ and 'quotes' \"too\"\n$HOME `x`",
        temperature="1",
        stop="END",
        extra_params='{"enable_thinking": false, "top_k": 40}',
    )
    upstream.clear()
    return ApiCall.objects.get()


def run_and_capture(upstream, command: list[str], source: str) -> bytes:
    subprocess.run(command, input=source, text=True, check=True, capture_output=True, timeout=30)
    (received,) = upstream.chat_requests()
    assert received.headers["Authorization"] == f"Bearer {KEY_PLACEHOLDER}"
    return received.body


def test_the_python_snippet_sends_the_stored_body(call, upstream):
    source = all_snippets(body=call.request_body)["Python"]

    assert run_and_capture(upstream, [sys.executable, "-"], source) == call.request_body.encode()


def test_the_python_snippet_sends_a_non_canonical_body_verbatim(call, upstream):
    body = '{ "model": "demo/echo",  "messages": [{"role": "user", "content": "spaced"}] }'
    source = all_snippets(body=body)["Python"]

    assert run_and_capture(upstream, [sys.executable, "-"], source) == body.encode()


@pytest.mark.skipif(not shutil.which("node"), reason="Node.js is not installed")
def test_the_javascript_snippet_sends_the_stored_body(call, upstream):
    source = all_snippets(body=call.request_body)["JavaScript"]

    received = run_and_capture(upstream, ["node", "--input-type=module", "-"], source)

    assert received == call.request_body.encode()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_the_curl_snippet_sends_the_stored_body(call, upstream):
    source = all_snippets(body=call.request_body)["cURL"]

    assert run_and_capture(upstream, ["bash"], source) == call.request_body.encode()


def test_the_call_page_shows_all_three_snippets_without_the_key(alice_client, call):
    page = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()

    for language in ("Python", "JavaScript", "cURL"):
        assert f"<summary>{language}</summary>" in page
    assert "&lt;YOUR_API_KEY&gt;" in page
    assert TEST_API_KEY not in page


def test_downloads_are_the_exact_bodies(alice_client, call):
    request = alice_client.get(reverse("call_download", args=[call.public_id, "request"]))
    response = alice_client.get(reverse("call_download", args=[call.public_id, "response"]))

    assert request.content == call.request_body.encode()
    assert response.content == call.response_body.encode()
    assert "attachment" in request["Content-Disposition"]
    assert json.loads(response.content)["object"] == "chat.completion"


FOREIGN = "https://collector.example/v1/chat/completions"


@pytest.fixture
def imported_call_with_a_foreign_url(alice_client, call):
    """Alice's call, exported, its URL changed to a host of her choosing, imported again."""
    response = alice_client.get(
        reverse("conversation_export_json", args=[call.conversation.public_id])
    )
    export = b"".join(response.streaming_content).decode()
    assert call.url in export
    upload = SimpleUploadedFile("x.json", export.replace(call.url, FOREIGN).encode())
    alice_client.post(reverse("conversations_import"), {"file": upload})
    imported = ApiCall.objects.get(url=FOREIGN)
    return imported


def test_get_code_for_an_imported_call_uses_the_configured_upstream(
    alice_client, imported_call_with_a_foreign_url, upstream
):
    call = imported_call_with_a_foreign_url
    page = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()
    snippets = page.split("Get code", 1)[1]

    assert "collector.example" not in snippets
    assert upstream.base_url + "/chat/completions" in snippets


def test_a_share_pages_get_code_never_points_readers_at_an_imported_url(
    alice_client, imported_call_with_a_foreign_url, upstream
):
    conversation = imported_call_with_a_foreign_url.conversation
    alice_client.post(
        reverse("share_create", args=[conversation.public_id]),
        {"expires_in": "", "show_inspector": "on"},
    )
    share = Share.objects.get(conversation=conversation)

    page = Client().get(share.get_absolute_url()).content.decode()
    snippets = page.split("<summary>Get code</summary>", 1)[1]

    assert "collector.example" not in snippets
    assert snippets.count(upstream.base_url + "/chat/completions") == 3  # Python, JS, cURL
