"""Spend protection: a per-user limit on calls to the model per minute."""

import re

import pytest
from django.urls import reverse

from chat.models import Conversation, Message
from tests.helpers import form_data, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def limit_of_two(settings):
    settings.UPSTREAM_CALLS_PER_MINUTE = 2


@pytest.fixture
def conversation(alice):
    return Conversation.objects.create(owner=alice, model="demo/echo")


def test_a_send_over_the_limit_is_refused_with_when_to_retry_and_the_text_kept(
    limit_of_two, alice_client, conversation, upstream
):
    send(alice_client, conversation, "one")
    send(alice_client, conversation, "two")

    response = send(alice_client, conversation, "three, over the limit")

    page = response.content.decode()
    assert response.status_code == 400
    assert "You have reached the limit of 2 calls to the model per minute." in page
    wait = int(re.search(r"Try again in (\d+) seconds?\.", page).group(1))
    assert 1 <= wait <= 60
    assert "three, over the limit</textarea>" in page
    assert Message.objects.count() == 4  # nothing of the refused send was saved
    assert len(upstream.chat_requests()) == 2


def test_the_streaming_path_is_refused_too(limit_of_two, alice_client, conversation, upstream):
    send(alice_client, conversation, "one")
    send(alice_client, conversation, "two")

    url = reverse("message_stream", args=[conversation.public_id])
    response = alice_client.post(url, form_data("three"))

    assert response.status_code == 400  # the page then submits the form, which says why
    assert Message.objects.count() == 4
    assert len(upstream.chat_requests()) == 2


def test_a_retry_counts_and_is_refused_with_a_message(
    limit_of_two, alice_client, conversation, upstream
):
    send(alice_client, conversation, "one", model="demo/fault:status=400")
    failed = Message.objects.get(role="assistant")
    url = reverse("reply_retry", args=[conversation.public_id, failed.public_id])
    alice_client.post(url)  # the second call this minute
    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED

    response = alice_client.post(url, follow=True)

    assert "You have reached the limit of 2 calls" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED
    assert len(upstream.chat_requests()) == 2


def test_the_limit_is_per_user(limit_of_two, alice_client, bob_client, bob, conversation):
    send(alice_client, conversation, "one")
    send(alice_client, conversation, "two")
    bobs = Conversation.objects.create(owner=bob, model="demo/echo")

    assert send(bob_client, bobs, "bob is not limited by alice").status_code == 302


def test_a_resubmitted_form_does_not_count_twice(limit_of_two, alice_client, conversation):
    data = form_data("once")
    url = reverse("message_send", args=[conversation.public_id])
    alice_client.post(url, data)
    alice_client.post(url, data)  # the same idempotency key: the first reply, no new call

    assert send(alice_client, conversation, "second call").status_code == 302


def test_zero_turns_the_limit_off(settings, alice_client, conversation):
    settings.UPSTREAM_CALLS_PER_MINUTE = 0

    for number in range(5):
        assert send(alice_client, conversation, f"message {number}").status_code == 302
