"""Regenerate, edit and resend, branch switching and deleting, on the message tree."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chat import branches, conversations, generation
from chat.models import ApiCall, Conversation, Message
from tests.helpers import form_data, panel, send, sent_bodies

pytestmark = pytest.mark.django_db


def say(conversation, text, key=None):
    """Send `text` through the service (the form path) and return the reply."""
    return generation.message_send(
        conversation=conversation,
        drafts=[conversations.Draft(content=text)],
        idempotency_key=key or f"key-{text}",
        parameters=panel(),
    )


def regenerate(conversation, reply, key, **parameters):
    return branches.reply_regenerate(
        conversation=conversation,
        reply=reply,
        idempotency_key=key,
        parameters=panel(**parameters),
    )


def edit(conversation, original, text, key=None):
    return branches.message_edit(
        conversation=conversation,
        original=original,
        content=text,
        idempotency_key=key or f"edit-{text}",
    )


def shown(conversation) -> list[str]:
    conversation.refresh_from_db()
    return [
        f"{message.role}:{message.content.split(chr(10))[0] if message.role == 'user' else message.pk}"
        for message in conversations.conversation_path(conversation=conversation)
    ]


def assert_tree_is_consistent(conversation):
    """No orphans, the current leaf is a leaf of this conversation, siblings in creation order."""
    messages = list(Message.objects.filter(conversation=conversation))
    ids = {message.id for message in messages}
    assert all(message.parent_id is None or message.parent_id in ids for message in messages)
    assert (
        not Message.objects.exclude(conversation=conversation)
        .filter(parent__conversation=conversation)
        .exists()
    )
    conversation.refresh_from_db()
    if messages:
        assert conversation.current_leaf_id in ids
        assert not any(message.parent_id == conversation.current_leaf_id for message in messages)
    children = branches.tree_children(conversation=conversation)
    for group in children.values():
        keys = [(message.created, message.id) for message in group]
        assert keys == sorted(keys)


def test_it_regenerates_a_reply_as_a_new_sibling_and_keeps_the_first(conversation):
    first = say(conversation, "Hello")

    second = regenerate(conversation, first, "regen-1")

    assert second.pk != first.pk
    assert second.parent_id == first.parent_id
    assert second.status == Message.Status.COMPLETE
    first.refresh_from_db()
    assert first.status == Message.Status.COMPLETE and first.content
    conversation.refresh_from_db()
    assert conversation.current_leaf == second
    assert ApiCall.objects.filter(message=first).count() == 1
    assert ApiCall.objects.filter(message=second).count() == 1
    assert_tree_is_consistent(conversation)


def test_it_regenerates_with_the_changed_parameters_and_the_same_context(conversation, upstream):
    first = say(conversation, "Hello")

    regenerate(conversation, first, "regen-1", model="demo/other", temperature=0.2)

    original, regenerated = sent_bodies(upstream)
    assert regenerated["messages"] == original["messages"]
    assert (regenerated["model"], regenerated["temperature"]) == ("demo/other", 0.2)
    conversation.refresh_from_db()
    assert conversation.model == "demo/other"  # the panel is saved, as sending saves it


def test_it_regenerates_once_per_submit(conversation, upstream):
    first = say(conversation, "Hello")

    one = regenerate(conversation, first, "same-key")
    two = regenerate(conversation, first, "same-key")

    assert one.pk == two.pk
    assert len(upstream.chat_requests()) == 2  # the send and one regeneration


def test_a_send_reusing_a_regenerations_token_still_sends(conversation, upstream):
    # With JavaScript, Regenerate posts the chat form's token; if its stream breaks before the
    # page gets a fresh one, the next Send carries the same token.
    first = say(conversation, "Hello")
    regenerate(conversation, first, "shared-token")

    reply = say(conversation, "Next", key="shared-token")

    assert reply.status == Message.Status.COMPLETE
    assert reply.parent.content == "Next"
    assert len(upstream.chat_requests()) == 3


def test_it_refuses_to_regenerate_at_the_message_limit(conversation, upstream, settings):
    settings.MAX_MESSAGES_PER_CONVERSATION = 2
    first = say(conversation, "Hello")

    with pytest.raises(ValidationError, match="reached 2 messages"):
        regenerate(conversation, first, "over-the-limit", temperature=0.5)

    conversation.refresh_from_db()
    assert Message.objects.count() == 2  # no pending reply left behind
    assert conversation.current_leaf_id == first.pk and conversation.temperature is None
    assert len(upstream.chat_requests()) == 1


def test_it_refuses_to_regenerate_a_user_message(conversation):
    reply = say(conversation, "Hello")

    with pytest.raises(ValidationError):
        regenerate(conversation, reply.parent, "regen-user")


def test_it_edits_a_message_into_a_new_branch_and_keeps_the_original(conversation, upstream):
    say(conversation, "First")
    second_reply = say(conversation, "Second")
    original = second_reply.parent

    reply = edit(conversation, original, "Second, edited")

    edited = reply.parent
    assert edited.parent_id == original.parent_id
    assert edited.content == "Second, edited"
    assert reply.status == Message.Status.COMPLETE
    original.refresh_from_db()
    assert original.content == "Second"
    assert Message.objects.filter(pk=second_reply.pk).exists()
    assert shown(conversation)[-2] == "user:Second, edited"
    # The new branch's request has the context up to the edited message, not the old branch.
    last = sent_bodies(upstream)[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["First", "Second, edited"]
    assert_tree_is_consistent(conversation)


def test_it_edits_the_first_message_into_a_second_root(conversation):
    reply = say(conversation, "First")

    edit(conversation, reply.parent, "First, edited")

    roots = Message.objects.filter(conversation=conversation, parent__isnull=True)
    assert [root.content for root in roots] == ["First", "First, edited"]
    assert_tree_is_consistent(conversation)


def test_it_edits_a_reply_into_a_written_sibling_without_a_call(conversation, upstream):
    reply = say(conversation, "First")

    edited = edit(conversation, reply, "what it should have said")

    assert edited.role == "assistant" and edited.written and edited.parent_id == reply.parent_id
    assert edited.status == Message.Status.COMPLETE and not edited.calls.exists()
    assert len(upstream.chat_requests()) == 1
    assert_tree_is_consistent(conversation)


def test_it_refuses_to_edit_a_reply_still_generating(conversation):
    reply, _ = generation.message_start(
        conversation=conversation,
        drafts=[conversations.Draft(content="Hi")],
        idempotency_key="k",
        parameters=panel(),
    )

    with pytest.raises(ValidationError):
        edit(conversation, reply, "too soon")


def test_it_counts_siblings_in_creation_order(conversation):
    first = say(conversation, "Hello")
    second = regenerate(conversation, first, "r2")
    third = regenerate(conversation, first, "r3")

    messages = [first, second, third, first.parent]
    branches.branches_attach(conversation=conversation, messages=messages)

    assert [(m.branch.index, m.branch.count) for m in (first, second, third)] == [
        (1, 3),
        (2, 3),
        (3, 3),
    ]
    assert first.branch.previous is None and first.branch.next.pk == second.pk
    assert third.branch.next is None and third.branch.previous.pk == second.pk
    assert first.parent.branch is None  # an only child has no controls


def test_it_switches_to_the_newest_leaf_of_the_chosen_branch(conversation):
    first_reply = say(conversation, "Hello")
    say(conversation, "Deeper on the first branch")
    older_leaf = say(conversation, "Deepest on the first branch")
    second_reply = regenerate(conversation, first_reply, "r2")

    leaf = branches.branch_switch(conversation=conversation, message=first_reply)

    conversation.refresh_from_db()
    assert leaf == older_leaf == conversation.current_leaf
    assert shown(conversation)[-2] == "user:Deepest on the first branch"

    branches.branch_switch(conversation=conversation, message=second_reply)
    conversation.refresh_from_db()
    assert conversation.current_leaf == second_reply  # remembered until switched again


def test_it_continues_the_branch_that_is_shown(conversation, upstream):
    first_reply = say(conversation, "Hello")
    regenerate(conversation, first_reply, "r2")
    branches.branch_switch(conversation=conversation, message=first_reply)

    reply = say(conversation, "Go on")

    assert reply.parent.parent_id == first_reply.pk
    assert_tree_is_consistent(conversation)


def test_it_deletes_a_branch_and_nothing_else(conversation):
    first_reply = say(conversation, "Hello")
    say(conversation, "More")
    second_reply = regenerate(conversation, first_reply, "r2")
    kept_after = say(conversation, "On the second branch")
    before = set(Message.objects.values_list("pk", flat=True))
    doomed = {
        first_reply.pk,
        *Message.objects.filter(parent=first_reply).values_list("pk", flat=True),
    }
    doomed |= set(Message.objects.filter(parent__parent=first_reply).values_list("pk", flat=True))

    branches.branch_delete(conversation=conversation, message=first_reply)

    assert set(Message.objects.values_list("pk", flat=True)) == before - doomed
    assert not ApiCall.objects.filter(message_id__in=doomed).exists()
    assert Message.objects.filter(pk=second_reply.pk).exists()
    conversation.refresh_from_db()
    assert conversation.current_leaf == kept_after  # the branch shown was not deleted
    assert_tree_is_consistent(conversation)


def test_it_shows_the_nearest_sibling_when_the_shown_branch_is_deleted(conversation):
    first_reply = say(conversation, "Hello")
    second_reply = regenerate(conversation, first_reply, "r2")
    third_reply = regenerate(conversation, first_reply, "r3")
    branches.branch_switch(conversation=conversation, message=second_reply)

    branches.branch_delete(conversation=conversation, message=second_reply)

    conversation.refresh_from_db()
    assert conversation.current_leaf == first_reply  # the one before it
    branches.branch_delete(conversation=conversation, message=first_reply)
    conversation.refresh_from_db()
    assert conversation.current_leaf == third_reply  # none before: the one after
    assert_tree_is_consistent(conversation)


def test_it_shows_the_parent_when_the_last_child_is_deleted(conversation):
    say(conversation, "Hello")
    second = say(conversation, "Again")

    branches.branch_delete(conversation=conversation, message=second.parent)

    conversation.refresh_from_db()
    assert conversation.current_leaf == second.parent.parent
    assert_tree_is_consistent(conversation)


def test_it_empties_the_conversation_when_its_only_root_is_deleted(conversation):
    reply = say(conversation, "Hello")

    branches.branch_delete(conversation=conversation, message=reply.parent)

    conversation.refresh_from_db()
    assert conversation.current_leaf is None
    assert not Message.objects.filter(conversation=conversation).exists()


def test_it_refuses_to_delete_a_branch_still_generating(conversation):
    reply, _ = generation.message_start(
        conversation=conversation,
        drafts=[conversations.Draft(content="Hi")],
        idempotency_key="k",
        parameters=panel(),
    )

    with pytest.raises(ValidationError):
        branches.branch_delete(conversation=conversation, message=reply.parent)
    assert Message.objects.filter(pk=reply.pk).exists()


# --- Through the pages -------------------------------------------------------


def post(client, name, conversation, message, data=None):
    url = reverse(name, args=[conversation.public_id, message.public_id])
    return client.post(url, data or {})


def test_it_regenerates_from_the_page_with_the_panels_parameters(
    alice_client, conversation, upstream
):
    send(alice_client, conversation, "Hello")
    reply = Message.objects.get(role="assistant")

    response = post(
        alice_client,
        "reply_regenerate",
        conversation,
        reply,
        form_data("", model="demo/second", max_tokens="3"),
    )

    new = Message.objects.filter(role="assistant").exclude(pk=reply.pk).get()
    assert response.status_code == 302
    assert response.url.endswith(f"#message-{new.public_id}")
    assert sent_bodies(upstream)[-1]["max_tokens"] == 3
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "2 / 2" in page
    assert 'aria-label="Previous branch"' in page


def test_it_shows_panel_errors_when_regenerating_with_bad_parameters(alice_client, conversation):
    send(alice_client, conversation, "Hello")
    reply = Message.objects.get(role="assistant")

    response = post(
        alice_client,
        "reply_regenerate",
        conversation,
        reply,
        form_data("", temperature="9", extra_params='{"oops"'),
    )

    assert response.status_code == 400
    page = response.content.decode()
    # demo/echo has a schema (0-2), checked even while the extra JSON is broken.
    assert "temperature: must be at most 2." in page
    assert "{&quot;oops&quot;" in page  # the user's text is kept
    assert Message.objects.filter(role="assistant").count() == 1


def test_it_edits_from_the_page(alice_client, conversation):
    send(alice_client, conversation, "Hello")
    original = Message.objects.get(role="user")

    response = post(
        alice_client,
        "message_edit",
        conversation,
        original,
        {"edit-content": "Hello, edited", "edit-idempotency_key": "e1"},
    )

    assert response.status_code == 302
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "Hello, edited" in page
    assert "2 / 2" in page
    assert Message.objects.filter(role="user").count() == 2


def test_it_keeps_the_edited_text_when_it_is_invalid(alice_client, conversation, settings):
    send(alice_client, conversation, "Hello")
    original = Message.objects.get(role="user")
    settings.MAX_MESSAGE_CHARS = 100_000
    too_long = "x" * 100_001

    response = post(
        alice_client,
        "message_edit",
        conversation,
        original,
        {"edit-content": too_long, "edit-idempotency_key": "e1"},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "Ensure this value has at most 100000 characters" in page
    assert too_long in page
    assert '<details class="edit" open>' in page
    blank = post(
        alice_client,
        "message_edit",
        conversation,
        original,
        {"edit-content": "   ", "edit-idempotency_key": "e2"},
    )
    assert "Write a message first." in blank.content.decode()
    assert Message.objects.filter(role="user").count() == 1


def test_it_switches_branches_from_the_page(alice_client, conversation):
    send(alice_client, conversation, "Hello")
    first = Message.objects.get(role="assistant")
    post(alice_client, "reply_regenerate", conversation, first, form_data(""))

    response = post(alice_client, "branch_switch", conversation, first)

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.current_leaf == first
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "1 / 2" in page
    # The inspector shows the call behind the reply on screen.
    assert str(ApiCall.objects.get(message=first).public_id) in page


def test_it_deletes_a_branch_from_the_page(alice_client, conversation):
    send(alice_client, conversation, "Hello")
    first = Message.objects.get(role="assistant")
    post(alice_client, "reply_regenerate", conversation, first, form_data(""))

    response = post(alice_client, "branch_delete", conversation, first)

    assert response.status_code == 302
    assert not Message.objects.filter(pk=first.pk).exists()
    assert Message.objects.count() == 2


# --- Any sequence of branch operations keeps the tree whole ---------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["send", "regenerate", "edit", "switch", "delete"]),
        st.integers(min_value=0, max_value=50),  # which message, modulo how many there are
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture
def no_call_limit(settings):
    settings.UPSTREAM_CALLS_PER_MINUTE = 0  # every generated example sends


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
def test_any_sequence_of_branch_operations_keeps_the_tree_consistent(
    alice, no_call_limit, operations
):
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")
    for step, (operation, pick) in enumerate(operations):
        messages = list(Message.objects.filter(conversation=conversation))
        replies = [m for m in messages if m.role == "assistant"]
        questions = [m for m in messages if m.role == "user"]
        conversation.refresh_from_db()
        if operation == "send" or not messages:
            say(conversation, f"message {step}", key=f"send-{step}")
        elif operation == "regenerate" and replies:
            regenerate(conversation, replies[pick % len(replies)], f"regen-{step}")
        elif operation == "edit" and questions:
            edit(conversation, questions[pick % len(questions)], f"edit {step}", key=f"e-{step}")
        elif operation == "switch":
            branches.branch_switch(
                conversation=conversation, message=messages[pick % len(messages)]
            )
        elif operation == "delete":
            doomed = messages[pick % len(messages)]
            below = branches.subtree(branches.tree_children(conversation=conversation), doomed)
            before = {m.pk for m in messages}
            branches.branch_delete(conversation=conversation, message=doomed)
            after = set(
                Message.objects.filter(conversation=conversation).values_list("pk", flat=True)
            )
            assert after == before - {m.pk for m in below}  # the branch, and only it
        assert_tree_is_consistent(conversation)
