"""SQLite connections a request's thread closes are reused by the next (playground/sqlite_pool)."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="only SQLite's connections are pooled"
    ),
]


def in_a_request_thread(work: Callable[[], Any]) -> Any:
    """Run `work` as a request does under ASGI: in a new thread that closes its connection."""
    result = {}

    def run() -> None:
        try:
            result["value"] = work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result["value"]


def raw_connection() -> Any:
    connection.ensure_connection()
    return connection.connection


def test_the_next_request_thread_takes_the_connection_the_last_one_closed():
    assert in_a_request_thread(raw_connection) is in_a_request_thread(raw_connection)


def test_a_connection_closed_inside_a_transaction_is_closed_for_real():
    def close_while_writing() -> Any:
        with transaction.atomic():
            get_user_model().objects.create(username="half-saved")  # takes the write lock
            raw = connection.connection
            connection.close()
        return raw

    closed = in_a_request_thread(close_while_writing)

    assert in_a_request_thread(raw_connection) is not closed
    # The write was rolled back and its lock let go: the next request can write.
    in_a_request_thread(lambda: get_user_model().objects.create(username="next"))
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["next"]


def test_a_connection_left_with_an_open_transaction_is_closed_for_real():
    def leave_uncommitted() -> Any:
        connection.set_autocommit(False)
        get_user_model().objects.create(username="uncommitted")
        return raw_connection()

    left = in_a_request_thread(leave_uncommitted)

    assert in_a_request_thread(raw_connection) is not left
    in_a_request_thread(lambda: get_user_model().objects.create(username="next"))
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["next"]
