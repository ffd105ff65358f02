"""Spend protection: a per-user limit on calls to the model per minute."""

import re

import pytest
from django.urls import reverse

from chat.models import Conversation, Message
from tests.helpers import form_data, send, start_with_room_in_the_minute

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def room_in_the_minute():
    start_with_room_in_the_minute()


@pytest.fixture
def limit_of_two(settings):
    settings.UPSTREAM_CALLS_PER_MINUTE = 2


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


def test_a_resubmitted_regenerate_does_not_count_twice(
    limit_of_two, alice_client, conversation, upstream
):
    send(alice_client, conversation, "one")
    reply = Message.objects.get(role="assistant")
    regenerate = reverse("reply_regenerate", args=[conversation.public_id, reply.public_id])
    data = form_data("")
    alice_client.post(regenerate, data)
    resubmitted = alice_client.post(regenerate, data)  # the same key: that reply, no new call

    assert resubmitted.status_code == 302
    assert Message.objects.filter(role="assistant").count() == 2
    assert len(upstream.chat_requests()) == 2
    assert send(alice_client, conversation, "third call").status_code == 400  # 2 a minute


def test_zero_turns_the_limit_off(settings, alice_client, conversation):
    settings.UPSTREAM_CALLS_PER_MINUTE = 0

    for number in range(5):
        assert send(alice_client, conversation, f"message {number}").status_code == 302


def test_regenerate_edit_and_compare_count_against_the_limit(
    limit_of_two, alice_client, conversation, upstream
):
    send(alice_client, conversation, "one")
    reply = Message.objects.get(role="assistant")
    question = reply.parent
    regenerate = reverse("reply_regenerate", args=[conversation.public_id, reply.public_id])
    edit = reverse("message_edit", args=[conversation.public_id, question.public_id])
    compare = reverse("compare_new", args=[conversation.public_id])

    assert alice_client.post(regenerate, form_data("", temperature="0.5")).status_code == 302
    refused = alice_client.post(regenerate, form_data("", temperature="0.7"))
    edited = alice_client.post(edit, {"edit-content": "one, edited", "edit-idempotency_key": "e"})
    compared = alice_client.post(
        compare,
        {
            "content": "a prompt kept",
            "idempotency_key": "c",
            "column-1-model": "demo/a",
            "column-2-model": "demo/b",
        },
    )

    for response in (refused, edited, compared):
        assert response.status_code == 400
        assert "You have reached the limit of 2 calls" in response.content.decode()
    assert 'name="temperature" value="0.7"' in refused.content.decode()
    assert "one, edited</textarea>" in edited.content.decode()
    assert "a prompt kept</textarea>" in compared.content.decode()
    assert Message.objects.count() == 3  # only the send and one regeneration were saved
    assert len(upstream.chat_requests()) == 2


def test_a_compare_run_counts_one_call_per_column(settings, alice_client, conversation, upstream):
    settings.UPSTREAM_CALLS_PER_MINUTE = 3
    compare = reverse("compare_new", args=[conversation.public_id])
    columns = {f"column-{n}-model": f"demo/{n}" for n in range(1, 5)}

    response = alice_client.post(compare, {"content": "x", "idempotency_key": "k", **columns})

    assert response.status_code == 400
    assert "limit of 3 calls" in response.content.decode()
    assert upstream.chat_requests() == []


def test_a_global_limit_holds_across_users_with_its_own_message(
    settings, alice_client, bob_client, bob, conversation, upstream
):
    settings.UPSTREAM_CALLS_PER_MINUTE_GLOBAL = 2
    bobs = Conversation.objects.create(owner=bob, model="demo/echo")
    send(alice_client, conversation, "one")
    send(bob_client, bobs, "two")

    refused = send(alice_client, conversation, "three, over the server's limit")

    page = refused.content.decode()
    assert refused.status_code == 400
    assert (
        "This server has reached its limit of 2 calls to the model per minute, across all users."
        in page
    )
    assert re.search(r"Try again in \d+ seconds?\.", page)
    assert "three, over the server&#x27;s limit</textarea>" in page
    assert len(upstream.chat_requests()) == 2


def test_a_call_refused_by_the_global_limit_does_not_use_up_the_users_own(
    settings, alice_client, bob_client, bob, conversation
):
    settings.UPSTREAM_CALLS_PER_MINUTE = 2
    settings.UPSTREAM_CALLS_PER_MINUTE_GLOBAL = 1
    bobs = Conversation.objects.create(owner=bob, model="demo/echo")
    send(bob_client, bobs, "bob takes the server's one call")
    assert send(alice_client, conversation, "refused by the server").status_code == 400

    settings.UPSTREAM_CALLS_PER_MINUTE_GLOBAL = 0  # off
    send(alice_client, conversation, "one")

    assert send(alice_client, conversation, "two").status_code == 302  # the refusal cost none
