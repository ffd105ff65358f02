"""Long conversations: the page opens at the latest messages, and raw records load on demand."""

import pytest
from django.urls import reverse

from chat.models import ApiCall, Conversation, Message
from chat.views.pages import MAX_MESSAGES_SHOWN

pytestmark = pytest.mark.django_db


@pytest.fixture
def long_conversation(alice):
    conversation = Conversation.objects.create(owner=alice, model="demo/echo", title="Long")
    parent = None
    for number in range(MAX_MESSAGES_SHOWN + 30):
        role = "user" if number % 2 == 0 else "assistant"
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role=role, content=f"message {number:03}"
        )
        if role == "assistant":
            ApiCall.objects.create(
                conversation=conversation,
                message=parent,
                url="http://upstream/v1/chat/completions",
                request_body=f'{{"n": "body of {number:03}"}}',
                http_status=200,
            )
    conversation.current_leaf = parent
    conversation.save()
    return conversation


def test_a_long_conversation_opens_at_its_latest_messages(alice_client, long_conversation):
    page = alice_client.get(long_conversation.get_absolute_url()).content.decode()

    assert page.count('class="message ') == MAX_MESSAGES_SHOWN
    assert "message 029" not in page and "message 030" in page and "message 129" in page
    assert "30 earlier messages not shown." in page


def test_show_all_renders_the_whole_conversation(alice_client, long_conversation):
    url = long_conversation.get_absolute_url() + "?all=1"

    page = alice_client.get(url).content.decode()

    assert page.count('class="message ') == MAX_MESSAGES_SHOWN + 30
    assert "earlier messages not shown" not in page
    assert page.index("message 000") < page.index("message 129")


def test_only_the_last_replys_raw_call_is_in_the_page(alice_client, long_conversation):
    page = alice_client.get(long_conversation.get_absolute_url()).content.decode()

    assert "body of 129" in page  # the last reply's record, inline
    assert "body of 127" not in page  # an older one: a link and a URL to fetch it from
    older = ApiCall.objects.get(request_body__contains="body of 127")
    assert reverse("call_record", args=[older.public_id]) in page


def test_an_older_record_is_served_to_its_owner_only(alice_client, bob_client, long_conversation):
    older = ApiCall.objects.get(request_body__contains="body of 127")
    url = reverse("call_record", args=[older.public_id])

    assert "body of 127" in alice_client.get(url).content.decode()
    assert bob_client.get(url).status_code == 404
