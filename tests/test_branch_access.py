"""Owner checks and CSRF on every URL of branches and compare runs."""

import pytest
from django.test import Client
from django.urls import reverse

from chat import compare
from chat.models import CompareRun, Conversation, Message
from tests.helpers import form_data, panel, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_run(alice, alice_client):
    """Alice's conversation: one exchange, then a compare run (its first column streamed)."""
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")
    send(alice_client, conversation, "Hello")
    conversation.refresh_from_db()
    run, _ = compare.compare_start(
        conversation=conversation,
        content="Compare",
        idempotency_key="run",
        parameter_sets=[panel(), panel()],
        claim=False,
    )
    return run


def every_new_url(run: CompareRun) -> list[tuple[str, str]]:
    """(method, url) for each URL this feature adds, pointing at Alice's objects."""
    conversation = run.conversation
    user = Message.objects.filter(conversation=conversation, role="user").first()
    reply = Message.objects.filter(conversation=conversation, role="assistant").first()
    ids = [conversation.public_id]
    run_ids = [conversation.public_id, run.public_id]
    return [
        ("post", reverse("reply_regenerate", args=[*ids, reply.public_id])),
        ("post", reverse("reply_regenerate_stream", args=[*ids, reply.public_id])),
        ("post", reverse("message_edit", args=[*ids, user.public_id])),
        ("post", reverse("message_edit_stream", args=[*ids, user.public_id])),
        ("post", reverse("branch_switch", args=[*ids, reply.public_id])),
        ("post", reverse("branch_delete", args=[*ids, reply.public_id])),
        ("get", reverse("compare_new", args=ids)),
        ("post", reverse("compare_new", args=ids)),
        ("post", reverse("compare_start", args=ids)),
        ("get", reverse("compare_detail", args=run_ids)),
        ("post", reverse("compare_column_stream", args=[*run_ids, 0])),
        ("post", reverse("compare_choose", args=[*run_ids, reply.public_id])),
    ]


def a_valid_body() -> dict:
    body = form_data("bob was here")
    body.update({"edit-content": "bob was here", "edit-idempotency_key": "bob"})
    for number in (1, 2):
        body.update({f"column-{number}-model": "demo/echo"})
    return body


def snapshot(run: CompareRun) -> tuple:
    conversation = Conversation.objects.get(pk=run.conversation_id)
    return (
        list(Message.objects.values_list("pk", "status", "content")),
        conversation.current_leaf_id,
        CompareRun.objects.count(),
        list(run.columns.values_list("generation_started", flat=True)),
    )


def test_another_user_gets_404_on_every_new_url(alices_run, bob_client, upstream):
    before = snapshot(alices_run)
    sent = len(upstream.chat_requests())

    for method, url in every_new_url(alices_run):
        response = getattr(bob_client, method)(url, a_valid_body())
        assert response.status_code == 404, (method, url)

    assert snapshot(alices_run) == before
    assert len(upstream.chat_requests()) == sent


def test_anonymous_visitors_are_sent_to_log_in_from_every_new_url(alices_run):
    for method, url in every_new_url(alices_run):
        response = getattr(Client(), method)(url, a_valid_body())
        assert response.status_code == 302, (method, url)
        assert response.url.startswith(reverse("login"))


def test_every_new_post_needs_the_csrf_token(alices_run, alice, upstream):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    before = snapshot(alices_run)

    for method, url in every_new_url(alices_run):
        if method == "post":
            assert client.post(url, a_valid_body()).status_code == 403, url

    assert snapshot(alices_run) == before


def test_the_new_posts_refuse_get(alices_run, alice_client):
    urls = every_new_url(alices_run)
    pages = {url for method, url in urls if method == "get"}
    for method, url in urls:
        if method == "post" and url not in pages:
            assert alice_client.get(url).status_code == 405, url


def test_a_message_of_another_conversation_is_not_found(alices_run, alice, alice_client):
    other = Conversation.objects.create(owner=alice, model="demo/echo")
    reply = Message.objects.filter(role="assistant").first()

    url = reverse("branch_switch", args=[other.public_id, reply.public_id])

    assert alice_client.post(url).status_code == 404
    choose = reverse(
        "compare_choose", args=[other.public_id, alices_run.public_id, reply.public_id]
    )
    assert alice_client.post(choose).status_code == 404  # the run is not in `other`
    send(alice_client, other, "Elsewhere")
    reply_elsewhere = other.messages.get(role="assistant")
    run_conversation = alices_run.conversation.public_id
    choose = reverse(
        "compare_choose", args=[run_conversation, alices_run.public_id, reply_elsewhere.public_id]
    )
    assert alice_client.post(choose).status_code == 404  # the reply is not in the run's
    assert CompareRun.objects.get().chosen is None
