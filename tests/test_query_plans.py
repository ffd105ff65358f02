"""The indexes named after the queries they serve are the ones the database uses.

bench/scale.py measures the pages over large data; these tests keep the plans behind those
numbers from drifting when a query or an index changes. PostgreSQL would scan the tiny test
tables sequentially, so sequential scans are switched off for the plan.
"""

import pytest
from django.db import connection

from chat import usage
from chat.models import ApiCall, Conversation

pytestmark = pytest.mark.django_db


def plan(queryset) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def test_the_conversation_list_reads_the_owner_updated_index(alice):
    Conversation.objects.create(owner=alice, title="One")
    listing = Conversation.objects.filter(owner=alice).only("public_id", "title", "updated")

    assert "conversation_owner_updated" in plan(listing)


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="PostgreSQL keeps large bodies out of the row (TOAST): any index on the conversation "
    "serves the totals, and its planner picks between them",
)
def test_conversation_totals_come_from_the_index_alone(alice):
    conversation = Conversation.objects.create(owner=alice)
    ApiCall.objects.create(conversation=conversation, status="succeeded", url="http://x/")
    calls = ApiCall.objects.filter(conversation=conversation).values("conversation")
    totals_query = calls.annotate(**usage._TOTALS)

    assert "COVERING INDEX apicall_conversation_totals" in plan(totals_query)
    assert usage.conversation_totals(conversation=conversation)["calls"] == 1
