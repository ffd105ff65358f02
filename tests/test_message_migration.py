"""Existing conversations migrate to the API's message structure without loss."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("chat", "0007_share_response_headers_invitations")]
AFTER = [("chat", "0010_remove_message_raw_request")]


@pytest.fixture
def migrated_back():
    """The test runs on the schema of an older migration; later tests need the newest."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_raw_bodies_and_user_messages_carry_over(migrated_back):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    user = old.get_model("auth", "User").objects.create(username="old-timer")
    conversation = old.get_model("chat", "Conversation").objects.create(owner=user, model="m")
    Message = old.get_model("chat", "Message")
    raw = {"model": "m", "messages": [{"role": "user", "content": "é"}], "temperature": 0.5}
    asked = Message.objects.create(
        conversation=conversation, role="user", content="é", raw_request=raw
    )
    Message.objects.create(conversation=conversation, parent=asked, role="assistant", content="A")

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("chat", "Message")

    asked = new.objects.get(role="user")
    assert (
        asked.raw_body
        == '{"model":"m","messages":[{"role":"user","content":"é"}],"temperature":0.5}'
    )
    assert asked.written and asked.content == "é" and asked.parts is None
    reply = new.objects.get(role="assistant")
    assert not reply.written and reply.content == "A" and reply.extra == {}
