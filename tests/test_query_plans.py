"""The indexes named after the queries they serve are the ones the database uses.

bench/scale.py measures the pages over large data; these tests keep the plans behind those
numbers from drifting when a query or an index changes. Each test captures the SQL the app
itself runs (the view, or the service function) and asks the database for its plan.
PostgreSQL costs plans from table statistics, and on the tiny test tables any plan is cheap:
it may scan sequentially, or read another index and sort. So sequential scans and sorts are
priced out for the plan, and the question asked is "is there an index that serves this query,
order included" - the plan the large tables of bench/scale.py get.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat import usage
from chat.models import ApiCall, Conversation

pytestmark = pytest.mark.django_db


def plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"EXPLAIN {sql}")
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(row) for row in cursor.fetchall())


def captured(run, table: str, containing: str) -> str:
    """The one query `run` makes on `table` whose SQL contains `containing`."""
    with CaptureQueriesContext(connection) as queries:
        run()
    (sql,) = [
        query["sql"]
        for query in queries.captured_queries
        if f'FROM "{table}"' in query["sql"] and containing in query["sql"]
    ]
    return sql


def test_the_conversation_list_reads_the_owner_updated_index(alice, alice_client):
    Conversation.objects.create(owner=alice, title="One")

    page_query = captured(
        lambda: alice_client.get(reverse("conversation_list")), "chat_conversation", "ORDER BY"
    )

    assert "conversation_owner_updated" in plan(page_query)


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="PostgreSQL keeps large bodies out of the row (TOAST): any index on the conversation "
    "serves the totals, and its planner picks between them",
)
def test_conversation_totals_come_from_the_index_alone(alice):
    conversation = Conversation.objects.create(owner=alice)
    ApiCall.objects.create(conversation=conversation, status="succeeded", url="http://x/")

    totals_query = captured(
        lambda: usage.conversation_totals(conversation=conversation), "chat_apicall", "SUM("
    )

    assert "COVERING INDEX apicall_conversation_totals" in plan(totals_query)
    assert usage.conversation_totals(conversation=conversation)["calls"] == 1
