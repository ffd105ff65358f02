"""Conversation list, create, rename, delete, and that nobody else can touch them."""

import pytest
from django.test import Client
from django.urls import reverse

from chat.models import ApiCall, Conversation, Message
from tests.helpers import form_data, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(alice):
    return Conversation.objects.create(owner=alice, model="demo/echo", title="Alice's plans")


def test_it_creates_a_conversation_and_opens_it(alice_client, alice):
    response = alice_client.post(reverse("conversation_create"))

    conversation = Conversation.objects.get(owner=alice)
    assert response.status_code == 302
    assert response.url == conversation.get_absolute_url()
    assert alice_client.get(response.url).status_code == 200


def test_a_new_conversation_starts_from_the_last_settings(alice_client, alice, conversation):
    send(alice_client, conversation, "hi", model="openai/gpt-4o", temperature="0.2")

    alice_client.post(reverse("conversation_create"))

    newest = Conversation.objects.filter(owner=alice).order_by("-created").first()
    assert (newest.model, newest.temperature) == ("openai/gpt-4o", 0.2)
    assert newest.current_leaf is None


def test_the_list_shows_newest_first_and_paginates(alice_client, alice):
    for number in range(30):
        Conversation.objects.create(owner=alice, model="m", title=f"Chat {number:02}")

    first_page = alice_client.get(reverse("conversation_list")).content.decode()
    second_page = alice_client.get(reverse("conversation_list") + "?page=2").content.decode()

    assert first_page.index("Chat 29") < first_page.index("Chat 28")
    assert "Chat 05" in first_page and "Chat 04" not in first_page
    assert "Chat 04" in second_page and "Page 2 of 2" in second_page


def test_the_list_shows_only_my_conversations(alice_client, bob):
    Conversation.objects.create(owner=bob, model="m", title="Bob's secret")

    assert (
        "Bob&#x27;s secret" not in alice_client.get(reverse("conversation_list")).content.decode()
    )


def test_it_renames_a_conversation(alice_client, conversation):
    url = reverse("conversation_rename", args=[conversation.public_id])
    response = alice_client.post(url, {"title": "Better title"})

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "Better title"


def test_it_refuses_an_empty_title(alice_client, conversation):
    url = reverse("conversation_rename", args=[conversation.public_id])
    response = alice_client.post(url, {"title": ""})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Alice's plans"


def test_it_asks_before_deleting_then_deletes_everything(alice_client, conversation):
    send(alice_client, conversation, "hello")
    url = reverse("conversation_delete", args=[conversation.public_id])

    confirm = alice_client.get(url)
    assert confirm.status_code == 200
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert "cannot be undone" in confirm.content.decode()

    response = alice_client.post(url)
    assert response.status_code == 302
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    assert not ApiCall.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in(conversation):
    response = Client().get(conversation.get_absolute_url())

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("conversation_detail", "get"),
        ("message_send", "post"),
        ("parameters_save", "post"),
        ("conversation_rename", "post"),
        ("conversation_delete", "get"),
        ("conversation_delete", "post"),
    ],
)
def test_another_user_gets_404_for_my_conversation(
    bob_client, conversation, upstream, name, method
):
    url = reverse(name, args=[conversation.public_id])

    response = getattr(bob_client, method)(url, form_data("bob was here", title="hacked"))

    assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Alice's plans"
    assert not Message.objects.exists()
    assert upstream.chat_requests() == []


def test_another_user_gets_404_for_my_calls_and_retries(alice_client, bob_client, conversation):
    send(alice_client, conversation, "hello", model="demo/fault:status=500")
    call = ApiCall.objects.first()
    reply = Message.objects.get(role="assistant")

    assert bob_client.get(reverse("call_detail", args=[call.public_id])).status_code == 404
    for part in ("request", "response"):
        assert (
            bob_client.get(reverse("call_download", args=[call.public_id, part])).status_code == 404
        )
    retry = reverse("reply_retry", args=[conversation.public_id, reply.public_id])
    assert bob_client.post(retry).status_code == 404


def test_pages_refuse_the_wrong_method(alice_client, conversation):
    assert (
        alice_client.get(reverse("message_send", args=[conversation.public_id])).status_code == 405
    )
    assert alice_client.get(reverse("conversation_create")).status_code == 405
