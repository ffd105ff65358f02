"""Chatting through the form, end to end against the demo upstream over HTTP."""

import json
import threading

import pytest
from django.db import connections
from django.urls import reverse

from chat import client
from chat.models import ApiCall, Conversation, Message
from tests.conftest import TEST_API_KEY
from tests.helpers import form_data, headers_as_recorded, send, sent_bodies

pytestmark = pytest.mark.django_db


def test_it_saves_the_message_and_the_reply_then_redirects(alice_client, conversation):
    response = send(alice_client, conversation, "What is 2 + 2?")

    reply = Message.objects.get(role="assistant")
    assert response.status_code == 302
    assert response.url == f"{conversation.get_absolute_url()}#message-{reply.public_id}"
    user_message = Message.objects.get(role="user")
    assert user_message.content == "What is 2 + 2?"
    assert reply.parent == user_message
    assert reply.status == Message.Status.COMPLETE
    assert "What is 2 + 2?" in reply.content
    conversation.refresh_from_db()
    assert conversation.current_leaf == reply
    assert conversation.title == "What is 2 + 2?"


def test_it_shows_the_rendered_reply_on_the_page(alice_client, conversation):
    send(alice_client, conversation, "Show me code")

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "<strong>Demo reply</strong>" in page
    assert '<pre><code class="language-python">' in page  # highlighted code block
    assert "Show me code" in page


def test_it_sends_only_the_fields_the_user_set(alice_client, conversation, upstream):
    send(alice_client, conversation, "Hi", temperature="0.3")

    (body,) = sent_bodies(upstream)
    assert body == {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.3,
    }


def test_it_sends_every_parameter_and_merges_extra_json(alice_client, conversation, upstream):
    send(
        alice_client,
        conversation,
        "Hi",
        model="anthropic/claude-sonnet-4.5",
        system_prompt="Be brief.",
        temperature="0.5",
        top_p="0.9",
        max_tokens="256",
        stop="END\nSTOP",
        extra_params='{"enable_thinking": true, "top_k": 40}',
    )

    (body,) = sent_bodies(upstream)
    assert body == {
        "model": "anthropic/claude-sonnet-4.5",
        # Where Claude's schema puts it: a top-level field, not a system message.
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 256,
        "stop": ["END", "STOP"],
        "enable_thinking": True,
        "top_k": 40,
    }


def test_it_keeps_the_parameters_with_the_conversation(alice_client, conversation):
    send(alice_client, conversation, "Hi", temperature="0.7", extra_params='{"top_k": 5}')

    conversation.refresh_from_db()
    assert conversation.temperature == 0.7
    assert conversation.extra_params == {"top_k": 5}
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert 'name="temperature" value="0.7"' in page


def test_it_saves_parameters_without_sending(alice_client, conversation, upstream):
    url = reverse("parameters_save", args=[conversation.public_id])
    response = alice_client.post(url, form_data("", model="openai/gpt-4o", max_tokens="99"))

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.model, conversation.max_tokens) == ("openai/gpt-4o", 99)
    assert upstream.chat_requests() == []
    assert not Message.objects.exists()


def test_saving_parameters_brings_back_the_message_typed_so_far(alice_client, conversation):
    url = reverse("parameters_save", args=[conversation.public_id])
    alice_client.post(url, form_data("Half-written question", temperature="0.4"))

    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "Half-written question</textarea>" in page
    assert 'name="temperature" value="0.4"' in page
    again = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "Half-written question" not in again  # once, not forever


def test_it_sends_the_whole_path_as_context(alice_client, conversation, upstream):
    send(alice_client, conversation, "First")
    send(alice_client, conversation, "Second")

    second_body = sent_bodies(upstream)[1]
    roles = [message["role"] for message in second_body["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert second_body["messages"][2]["content"] == "Second"
    assert Message.objects.filter(conversation=conversation).count() == 4


def test_it_shows_reasoning_in_a_collapsed_block(alice_client, conversation):
    send(alice_client, conversation, "Think", extra_params='{"enable_thinking": true}')

    reply = Message.objects.get(role="assistant")
    assert reply.reasoning
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert '<details class="reasoning"><summary>Reasoning</summary>' in page


def test_it_records_the_call_exactly_as_sent_and_received(alice_client, conversation, upstream):
    send(alice_client, conversation, "Hi ✓", max_tokens="50")

    call = ApiCall.objects.get()
    (received,) = upstream.chat_requests()
    assert call.request_body.encode() == received.body
    assert call.status == ApiCall.Status.SUCCEEDED
    assert call.http_status == 200
    assert json.loads(call.response_body)["object"] == "chat.completion"
    assert call.prompt_tokens and call.completion_tokens and call.total_tokens
    assert call.finish_reason in {"stop", "length"}
    assert call.usd_spent is not None
    assert call.latency_ms is not None
    assert call.url == f"{upstream.base_url}/chat/completions"


@pytest.mark.django_db(transaction=True)
def test_a_conversation_deleted_while_its_reply_is_generated_stays_deleted(
    alice_client, conversation
):
    """Deleted in another tab while this one waits for the model: nothing comes back,
    and this tab says what happened."""

    def delete_in_another_tab():
        Conversation.objects.filter(pk=conversation.pk).delete()
        connections.close_all()  # this thread's

    threading.Timer(0.3, delete_in_another_tab).start()
    response = send(alice_client, conversation, "Hi", extra_params='{"demo_fault": "delay=1"}')

    assert response.status_code == 302 and response.url == reverse("conversation_list")
    page = alice_client.get(response.url).content.decode()
    assert "was deleted while its reply was being generated" in page
    assert not Message.objects.exists() and not ApiCall.objects.exists()


def test_no_cookie_from_one_call_goes_out_with_the_next(upstream):
    """A cookie an upstream sets (a CDN in front of it, say) is not sent back with the
    next call, which may be another user's: its record would not show it."""
    payload = {"model": "demo/echo", "messages": [{"role": "user", "content": "Hi"}]}
    first = client.send_chat(client.prepare_chat({**payload, "demo_fault": "set_cookie"}))
    second = client.prepare_chat(payload)
    client.send_chat(second)

    assert "demo_visitor=" in first.headers["Set-Cookie"]
    received = upstream.chat_requests()[1]
    assert "Cookie" not in received.headers
    assert second.redacted_headers() == headers_as_recorded(received)


def test_it_never_stores_the_api_key(alice_client, conversation, upstream):
    send(alice_client, conversation, "Hi")

    call = ApiCall.objects.get()
    assert call.request_headers["Authorization"] == "Bearer [redacted]"
    assert TEST_API_KEY not in json.dumps(call.request_headers)
    (received,) = upstream.chat_requests()
    assert received.headers["Authorization"] == f"Bearer {TEST_API_KEY}"
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    detail = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()
    assert TEST_API_KEY not in page + detail


def test_one_submit_makes_one_generation(alice_client, conversation, upstream):
    data = form_data("Only once")
    url = reverse("message_send", args=[conversation.public_id])

    first = alice_client.post(url, data)
    second = alice_client.post(url, data)

    assert first.status_code == second.status_code == 302
    assert first.url == second.url
    assert len(upstream.chat_requests()) == 1
    assert Message.objects.filter(role="user").count() == 1


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("temperature", "2.5", "temperature: must be at most 2."),
        ("top_p", "-0.1", "greater than or equal to 0"),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("stop", "a\nb\nc\nd\ne", "At most 4 stop sequences"),
        ("extra_params", "{not json", "Not valid JSON"),
        ("extra_params", "[1, 2]", "must be a JSON object"),
        ("extra_params", '{"model": "x"}', "&quot;model&quot; cannot be set here"),
        ("extra_params", '{"stream": true}', "&quot;stream&quot; cannot be set here"),
        ("extra_params", "[" * 5000 + "]" * 5000, "Extra parameters: nests deeper than 16 levels"),
    ],
)
def test_it_rejects_bad_parameters_and_keeps_the_text(
    alice_client, conversation, upstream, field, value, error
):
    response = send(alice_client, conversation, "My carefully written prompt", **{field: value})

    assert response.status_code == 400
    page = response.content.decode()
    assert error in page
    assert "My carefully written prompt" in page
    assert not Message.objects.exists()
    assert upstream.chat_requests() == []


def test_it_rejects_an_oversized_message_and_keeps_it(alice_client, conversation, settings):
    text = "x" * (settings.MAX_MESSAGE_CHARS + 1)
    response = send(alice_client, conversation, text)

    assert response.status_code == 400
    assert "Ensure this value has at most" in response.content.decode()
    assert text in response.content.decode()
    assert not Message.objects.exists()


def test_it_rejects_an_empty_message(alice_client, conversation):
    response = send(alice_client, conversation, "   ")

    assert response.status_code == 400
    assert "Write a message first." in response.content.decode()


def test_it_stops_a_conversation_at_the_message_limit(alice_client, conversation, settings):
    settings.MAX_MESSAGES_PER_CONVERSATION = 2
    send(alice_client, conversation, "one")

    response = send(alice_client, conversation, "two")

    assert response.status_code == 400
    assert "reached 2 messages" in response.content.decode()
    assert "two" in response.content.decode()
    assert Message.objects.count() == 2


def test_the_page_offers_the_upstream_models(alice_client, conversation):
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert '<option value="demo/echo">' in page
    assert '<option value="openai/gpt-4o">' in page


def test_the_page_falls_back_to_configured_models_when_the_list_fails(
    alice_client, conversation, settings
):
    settings.UPSTREAM_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    settings.UPSTREAM_FALLBACK_MODELS = ["my/fallback-model"]

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert '<option value="my/fallback-model">' in page
    assert "could not be loaded" in page


def test_every_control_has_a_visible_label(alice_client, conversation):
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    for field in [
        "content",
        "model",
        "system_prompt",
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "extra_params",
    ]:
        assert f'<label for="id_{field}">' in page
    assert '<label for="id_content">Message</label>' in page
    assert ">Send</button>" in page
