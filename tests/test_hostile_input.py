"""Hostile input a user types or uploads: refused with a message on its field, never a 500."""

import json
import socket
import sqlite3
import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from django.urls import reverse

from chat import branches, compare, conversations, generation, sharing, storable
from chat.models import ApiCall, Conversation, Message, Share
from playground import body_limits
from playground.handlers import OneHopASGIHandler
from tests.helpers import EndlessBody, asgi_request, form_data, large_export, panel, send

pytestmark = pytest.mark.django_db

CLAUDE = "anthropic/claude-sonnet-4.5"

# JSON that Python's parser takes but no database (nor the upstream) does, and what the
# field's message must say about it.
HOSTILE_JSON = {
    "NaN": ("NaN", "NaN is not a JSON number"),
    "Infinity": ("Infinity", "Infinity is not a JSON number"),
    "-Infinity": ("-Infinity", "-Infinity is not a JSON number"),
    "a number too large for a float": ("1e400", "1e400 is too large"),
    "a NUL character": ('"a\\u0000b"', "NUL character"),
    "a lone surrogate": ('"\\ud800"', "unpaired surrogate"),
    "a lone surrogate in a key": ('{"\\udfff": 1}', "unpaired surrogate"),
}
CASES = list(HOSTILE_JSON.values())
IDS = list(HOSTILE_JSON)


@pytest.fixture
def claude(alice):
    return Conversation.objects.create(owner=alice, model=CLAUDE)


def assert_refused_and_kept(response, field: str, typed: str, message: str, upstream) -> None:
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert message in errors
    assert response.context["form"][field].value() == typed  # the text as typed, kept
    assert not Message.objects.exists()
    assert upstream.chat_requests() == []


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_it_refuses_hostile_json_in_extra_parameters_on_its_field(
    alice_client, conversation, upstream, value, message
):
    typed = f'{{"top_k": {value}}}'

    response = send(alice_client, conversation, "Hello", extra_params=typed)

    assert_refused_and_kept(response, "extra_params", typed, message, upstream)
    assert "already submitted" not in response.content.decode()


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_it_refuses_hostile_json_in_a_schema_json_field_on_its_field(
    alice_client, claude, upstream, value, message
):
    typed = f'{{"type": "enabled", "budget_tokens": {value}}}'

    response = send(
        alice_client, claude, "Hello", model=CLAUDE, schema__thinking=typed, send_anyway="on"
    )

    assert_refused_and_kept(response, "schema__thinking", typed, message, upstream)


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_it_refuses_hostile_json_in_a_raw_body_on_its_field(
    alice_client, conversation, upstream, value, message
):
    typed = (
        '{"model": "demo/echo", "temperature": 0.5, "x": ' + value + ", "
        '"messages": [{"role": "user", "content": "Hi"}]}'
    )

    response = send(alice_client, conversation, "", use_raw="on", raw_body=typed)

    assert_refused_and_kept(response, "raw_body", typed, message, upstream)


@pytest.mark.parametrize("value, message", CASES, ids=IDS)
def test_save_parameters_refuses_hostile_json_with_a_400_not_a_500(
    alice_client, conversation, value, message
):
    typed = f'{{"top_k": {value}}}'
    url = reverse("parameters_save", args=[conversation.public_id])

    response = alice_client.post(url, form_data("", extra_params=typed))

    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["extra_params"])
    conversation.refresh_from_db()
    assert conversation.extra_params == {}


def test_a_refusal_by_the_database_is_not_called_a_reused_form(conversation):
    # A value no form lets through, given to the service directly: the database refuses
    # it (SQLite: a CHECK constraint, an IntegrityError; PostgreSQL: a DataError).
    refused = panel(extra_params={"top_k": float("nan")})

    with pytest.raises(ValidationError) as raised:
        generation.message_start(
            conversation=conversation,
            drafts=[conversations.Draft(content="Hi")],
            idempotency_key="k1",
            parameters=refused,
        )

    assert generation.KEY_REUSED not in raised.value.messages
    assert raised.value.messages == [generation.START_REFUSED]
    assert not Message.objects.exists()


def test_a_regenerate_refused_by_the_database_is_not_called_a_reused_form(
    alice_client, conversation
):
    send(alice_client, conversation, "Hi")
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)

    with pytest.raises(ValidationError) as raised:
        branches.reply_regenerate_start(
            conversation=conversation,
            reply=reply,
            idempotency_key="k2",
            parameters=panel(extra_params={"top_k": float("inf")}),
        )

    assert raised.value.messages == [generation.START_REFUSED]
    assert conversation.messages.count() == 2


def test_a_compare_refused_by_the_database_is_not_called_a_reused_form(conversation):
    columns = [panel(), panel(extra_params={"top_k": float("nan")})]

    with pytest.raises(ValidationError) as raised:
        compare.compare_start(
            conversation=conversation,
            content="Hi",
            idempotency_key="k3",
            parameter_sets=columns,
            claim=True,
        )

    assert raised.value.messages == [generation.START_REFUSED]
    assert not Message.objects.exists()


def test_a_reused_form_token_is_still_called_a_reused_form(alice_client, conversation):
    data = form_data("Hi")
    url = reverse("message_send", args=[conversation.public_id])
    alice_client.post(url, data)
    key = data["idempotency_key"]
    # The same token on another kind of submit (only a hand-made form does that).
    conversation.messages.filter(idempotency_key=key).update(idempotency_key="c:" + key)

    with pytest.raises(ValidationError) as raised:
        compare.compare_start(
            conversation=conversation,
            content="Hi",
            idempotency_key=key,
            parameter_sets=[panel(), panel()],
            claim=True,
        )
    assert raised.value.messages == [generation.KEY_REUSED]


# --- Text no database should hold, already stored or in a file (finding 7) ------------

sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="PostgreSQL cannot store a NUL: such data cannot exist"
)


def stored_with_nul_and_surrogates(owner) -> Conversation:
    """What SQLite holds after a reply with a NUL (text) and a lone surrogate (JSON fields)."""
    conversation = Conversation.objects.create(owner=owner, model="demo/echo", title="T\x00itle")
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="Say it"
    )
    reply = Message.objects.create(
        conversation=conversation, parent=question, role=Message.Role.ASSISTANT, content="a\x00b"
    )
    ApiCall.objects.create(
        conversation=conversation,
        message=reply,
        url="http://upstream.example/v1/chat/completions",
        request_body="{}",
        response_body='{"text": "a\\u0000b"}\x00',
        assembled_response={"choices": [{"message": {"content": "a\x00b\ud800"}}], "\udfff": 1},
        stream_events=[{"at_ms": 1, "data": "x\x00"}],
    )
    conversation.current_leaf = reply
    conversation.save(update_fields=["current_leaf"])
    return conversation


def exported(client, conversation) -> bytes:
    url = reverse("conversation_export_json", args=[conversation.public_id])
    return b"".join(client.get(url).streaming_content)


@sqlite_only
def test_a_conversation_holding_nul_and_lone_surrogates_survives_export_and_import(
    alice, alice_client, bob, bob_client
):
    data = exported(alice_client, stored_with_nul_and_surrogates(alice))

    assert storable.problem(json.loads(data)) == ""
    response = bob_client.post(
        reverse("conversations_import"),
        {"file": SimpleUploadedFile("export.json", data, content_type="application/json")},
    )

    assert response.status_code == 302
    copy = Conversation.objects.get(owner=bob)
    assert copy.title == "T\ufffditle"
    assert copy.current_leaf.content == "a\ufffdb"
    call = ApiCall.objects.get(conversation=copy)
    assert call.response_body == '{"text": "a\\u0000b"}\ufffd'  # the escape is text: kept
    assert call.assembled_response == {
        "choices": [{"message": {"content": "a\ufffdb\ufffd"}}],
        "\ufffd": 1,
    }
    assert call.stream_events == [{"at_ms": 1, "data": "x\ufffd"}]


def test_an_imported_file_with_nul_and_lone_surrogates_is_stored_with_replacements(bob, bob_client):
    text = (
        '{"format": "playground.conversations", "version": 1, "conversations": [{'
        '"model": "demo/echo", "title": "a\\u0000", "messages": ['
        '{"id": "q", "role": "user", "content": "x\\ud800y"},'
        '{"id": "r", "parent": "q", "role": "assistant", "content": "z\\u0000",'
        ' "calls": [{"request_body": "{}", "assembled_response": {"k\\udc00": "\\u0000"}}]}'
        "]}]}"
    )
    response = bob_client.post(
        reverse("conversations_import"),
        {"file": SimpleUploadedFile("e.json", text.encode(), content_type="application/json")},
    )

    assert response.status_code == 302
    copy = Conversation.objects.get(owner=bob)
    assert copy.title == "a\ufffd"
    assert list(copy.messages.values_list("content", flat=True)) == ["x\ufffdy", "z\ufffd"]
    assert ApiCall.objects.get().assembled_response == {"k\ufffd": "\ufffd"}


@sqlite_only
def test_continuing_an_old_share_whose_snapshot_holds_a_nul_makes_the_copy(alice, bob, bob_client):
    conversation = stored_with_nul_and_surrogates(alice)
    share = sharing.share_create(conversation=conversation, show_inspector=True, expires_in=None)
    document = {**share.snapshot, "title": "Old\x00"}  # taken before exports replaced it
    document["messages"][1]["content"] = "a\x00b"
    Share.objects.filter(pk=share.pk).update(snapshot=document)

    response = bob_client.post(reverse("share_continue", args=[share.token]))

    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302 and response.url == copy.get_absolute_url()
    assert copy.title == "Old\ufffd" and copy.current_leaf.content == "a\ufffdb"


def test_continuing_a_share_whose_snapshot_is_refused_says_why(
    alice_client, conversation, bob, bob_client, settings
):
    send(alice_client, conversation, "Hi")
    conversation.refresh_from_db()
    share = sharing.share_create(conversation=conversation, show_inspector=True, expires_in=None)
    settings.MAX_MESSAGES_PER_CONVERSATION = 1  # lowered since the snapshot was taken
    url = reverse("share_continue", args=[share.token])

    response = bob_client.post(url, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(url, 302)]
    page = response.content.decode()
    assert "Nothing was copied." in page
    assert "conversation.messages: 2 messages; at most 1 per conversation." in page
    assert not Conversation.objects.filter(owner=bob).exists()


# --- Request bodies over the limit (finding 9) ----------------------------------------

HUGE = 300 * 10**6
MULTIPART = "multipart/form-data; boundary=BoUnDaRy"


def test_a_huge_body_with_content_length_is_refused_under_asgi_before_it_is_read():
    body = EndlessBody(HUGE)
    started = time.monotonic()

    status, page = asgi_request(
        OneHopASGIHandler(),
        path=reverse("login"),
        headers={"content-length": str(HUGE), "content-type": MULTIPART},
        receive=body.receive,
    )

    assert status == 413
    assert b"larger than 2.5" in page
    assert body.read_bytes == 0  # nothing received, so nothing spooled to a temporary file
    assert time.monotonic() - started < 2


def test_a_chunked_body_past_the_limit_is_stopped_under_asgi(settings):
    body = EndlessBody(HUGE)

    status, _ = asgi_request(
        OneHopASGIHandler(),
        path=reverse("login"),
        headers={"content-type": MULTIPART},  # no Content-Length: chunked
        receive=body.receive,
    )

    assert status == 413
    assert body.read_bytes <= settings.MAX_REQUEST_BYTES + body.chunk


def test_an_import_may_be_larger_than_other_requests_but_not_without_bound(settings):
    settings.MAX_IMPORT_BYTES = 5 * 2**20
    within, beyond = EndlessBody(HUGE), EndlessBody(HUGE)

    asgi_request(
        OneHopASGIHandler(),
        path=reverse("conversations_import"),
        headers={"content-type": MULTIPART},
        receive=within.receive,
    )
    status, _ = asgi_request(
        OneHopASGIHandler(),
        path=reverse("conversations_import"),
        headers={"content-length": str(6 * 2**20), "content-type": MULTIPART},
        receive=beyond.receive,
    )

    assert within.read_bytes > settings.MAX_REQUEST_BYTES
    assert within.read_bytes <= 5 * 2**20 + body_limits.IMPORT_FORM_OVERHEAD + within.chunk
    assert status == 413 and beyond.read_bytes == 0


def test_a_huge_body_with_content_length_is_refused_under_wsgi_before_it_is_read(client):
    body = EndlessBody(HUGE)
    started = time.monotonic()

    response = client.post(
        reverse("login"),
        content_type=MULTIPART,
        **{"wsgi.input": body, "CONTENT_LENGTH": str(HUGE)},
    )

    assert response.status_code == 413
    assert body.read_bytes == 0
    assert time.monotonic() - started < 2


def test_an_import_over_the_limit_is_stopped_while_it_streams_and_says_so(
    bob, bob_client, settings
):
    settings.MAX_IMPORT_BYTES = 100_000
    file = SimpleUploadedFile("big.json", b" " * 150_000, content_type="application/json")

    response = bob_client.post(reverse("conversations_import"), {"file": file})

    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors["file"])
    assert "The file is larger than 97.7\xa0KB" in errors
    assert "Nothing was imported." in errors
    assert not Conversation.objects.filter(owner=bob).exists()


def test_an_import_declared_over_the_limit_is_refused_before_it_is_read(bob_client, settings):
    settings.MAX_IMPORT_BYTES = 100_000
    body = EndlessBody(HUGE)

    response = bob_client.post(
        reverse("conversations_import"),
        content_type=MULTIPART,
        **{"wsgi.input": body, "CONTENT_LENGTH": str(20 * 2**20)},
    )

    assert response.status_code == 413
    assert body.read_bytes == 0


def test_the_dev_server_answers_a_huge_declared_body_at_once_without_reading_it(live_server):
    host, port = live_server.thread.host, live_server.thread.port
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(
            f"POST {reverse('login')} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: {MULTIPART}\r\nContent-Length: {HUGE}\r\n\r\n".encode()
            + b"x" * 1000
        )
        answer = b""
        while chunk := conn.recv(65536):  # the server closes: it waits for no more body
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in answer


# --- A large import and other users' writes (finding 8) -------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_large_import_does_not_keep_other_users_writes_waiting(alice, bob, bob_client):
    data = large_export(conversations=300, exchanges=5)
    waits: list[float] = []
    importing = threading.Event()
    done = threading.Event()

    def another_user_writes() -> None:
        try:
            importing.wait()
            while not done.is_set():
                asked = time.monotonic()
                Conversation.objects.create(owner=alice, title="Alice meanwhile")
                waits.append(time.monotonic() - asked)
                time.sleep(0.02)
        finally:
            connections.close_all()

    writer = threading.Thread(target=another_user_writes)
    writer.start()
    importing.set()
    started = time.monotonic()
    response = bob_client.post(
        reverse("conversations_import"),
        {"file": SimpleUploadedFile("big.json", data, content_type="application/json")},
    )
    took = time.monotonic() - started
    done.set()
    writer.join()

    assert response.status_code == 302
    assert Conversation.objects.filter(owner=bob).count() == 300
    assert len(waits) > 5 and took > 1  # the writes did overlap the import's
    assert max(waits) < 0.75


def refuse_titles(title: str) -> str:
    """SQL for a trigger that makes the database refuse a conversation with `title`."""
    if connection.vendor == "sqlite":
        return (
            "CREATE TRIGGER refuse BEFORE INSERT ON chat_conversation "
            f"WHEN NEW.title = '{title}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    return (
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
        f"IF NEW.title = '{title}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; "
        "END $$ LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE INSERT ON chat_conversation "
        "FOR EACH ROW EXECUTE FUNCTION refuse()"
    )


def test_an_import_whose_write_fails_midway_keeps_nothing(bob, bob_client, settings):
    document = json.loads(large_export(conversations=6, exchanges=1))
    document["conversations"][4]["title"] = "refused"
    with connection.cursor() as cursor:
        cursor.execute(refuse_titles("refused"))

    response = bob_client.post(
        reverse("conversations_import"),
        {"file": SimpleUploadedFile("e.json", json.dumps(document).encode())},
    )

    assert response.status_code == 400
    assert "Nothing was imported. The database refused to store a conversation" in (
        " ".join(response.context["form"].errors["file"])
    )
    assert not Conversation.objects.filter(owner=bob).exists()
    assert not Message.objects.exists()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's one write lock")
@pytest.mark.django_db(transaction=True)
def test_a_send_while_the_database_is_locked_says_busy_and_keeps_the_text(
    alice_client, conversation, upstream
):
    connection.ensure_connection()
    connection.connection.execute("PRAGMA busy_timeout = 200")  # not the 20 s of settings
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        response = send(alice_client, conversation, "Keep this text")
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert response.status_code == 400
    assert generation.START_BUSY in " ".join(response.context["form"].non_field_errors())
    assert response.context["form"]["content"].value() == "Keep this text"
    assert not Message.objects.exists()
    assert upstream.chat_requests() == []


def test_a_urlconf_without_the_import_page_gets_the_general_limit(settings):
    """bench/floor.py serves a URLconf of its own: looking the import page up must not fail."""
    from playground import body_limits

    body_limits._import_path.cache_clear()
    settings.ROOT_URLCONF = "bench.floor_urls"
    try:
        assert body_limits.body_limit("/conversations/import/") == settings.MAX_REQUEST_BYTES
    finally:
        body_limits._import_path.cache_clear()
