"""With a distinctive key configured, drive every flow, then look for the key everywhere.

Everywhere: every response body (pages, streams, downloads, exports, shared pages, code
snippets, admin pages), every row of every table, and every log line. The key must reach the
upstream (the demo records it) and nothing else.
"""

import json
import logging

import pytest
from django.apps import apps
from django.core import serializers
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from chat.models import ApiCall, CompareRun, Conversation, Message, Preset, Share
from tests.helpers import form_data, send

pytestmark = pytest.mark.django_db

CANARY_KEY = "sk-CANARY-7f3a9c1e5b2d8046-do-not-leak"


class Recorder:
    """Every response body the flows below receive."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []

    def keep(self, label: str, response) -> None:
        if getattr(response, "streaming", False):
            body = b"".join(response.streaming_content)
        else:
            body = response.content
        self.bodies.append((label, body))
        self.last_body = body
        for name, value in response.items():
            self.bodies.append((f"{label} header {name}", value.encode()))

    def get(self, client: Client, url: str, **kwargs):
        response = client.get(url, **kwargs)
        self.keep(f"GET {url}", response)
        return response

    def post(self, client: Client, url: str, data=None, **kwargs):
        response = client.post(url, data or {}, **kwargs)
        self.keep(f"POST {url}", response)
        return response


@pytest.fixture
def canary(settings, upstream):
    settings.UPSTREAM_API_KEY = CANARY_KEY
    return upstream


def drive_every_flow(alice, alice_client, bob_client, admin_client, record: Recorder) -> None:
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")
    url = conversation.get_absolute_url()
    detail = lambda name, *args: reverse(name, args=[conversation.public_id, *args])  # noqa: E731

    record.post(alice_client, detail("message_send"), form_data("Plain reply, please"))
    record.post(
        alice_client,
        detail("message_stream"),
        form_data("Stream it", extra_params='{"enable_thinking": true}'),
    )
    record.post(
        alice_client, detail("message_send"), form_data("Fail", model="demo/fault:status=500")
    )
    record.post(
        alice_client, detail("message_send"), form_data("No auth", model="demo/fault:status=401")
    )
    failed = Message.objects.filter(status=Message.Status.FAILED).last()
    record.post(alice_client, detail("reply_retry", failed.public_id))
    record.post(
        alice_client,
        detail("message_stream"),
        form_data("Break", extra_params='{"demo_fault": "reset_after=2"}'),
    )
    record.post(alice_client, detail("parameters_save"), form_data(temperature="0.5"))
    drive_branches_and_compare(alice_client, conversation, detail, record)
    drive_models_raw_usage_and_presets(alice_client, detail, record)
    for page in (url, reverse("conversation_list"), reverse("share_list")):
        record.get(alice_client, page)
    for call in ApiCall.objects.all():
        record.get(alice_client, reverse("call_detail", args=[call.public_id]))
        for part in ("request", "response"):
            record.get(alice_client, reverse("call_download", args=[call.public_id, part]))
    for message in Message.objects.all():
        record.get(alice_client, detail("message_fragment", message.public_id))

    record.post(alice_client, detail("share_create"), {"show_inspector": "on"})
    share = Share.objects.get()
    record.get(Client(), share.get_absolute_url())
    record.post(bob_client, reverse("share_continue", args=[share.token]))

    record.get(alice_client, detail("conversation_export_md"))
    record.get(alice_client, reverse("conversations_export"))
    record.get(alice_client, detail("conversation_export_json"))
    upload = SimpleUploadedFile("export.json", record.last_body, content_type="application/json")
    record.post(bob_client, reverse("conversations_import"), {"file": upload})

    for model in (Conversation, Message, ApiCall, CompareRun):
        name = model._meta.model_name
        record.get(admin_client, reverse(f"admin:chat_{name}_changelist"))
        for pk in model.objects.values_list("pk", flat=True)[:20]:
            record.get(admin_client, reverse(f"admin:chat_{name}_change", args=[pk]))


def drive_models_raw_usage_and_presets(alice_client, detail, record: Recorder) -> None:
    raw = {"model": "demo/echo", "messages": [{"role": "user", "content": "Raw call"}]}
    record.post(
        alice_client,
        detail("message_send"),
        form_data("", use_raw="on", raw_body=json.dumps(raw)),
    )
    record.get(alice_client, detail("conversation_detail") + "?raw=1")
    thinker = form_data("", model="demo/thinker")
    record.post(alice_client, detail("parameters_panel"), thinker)
    record.post(alice_client, detail("preset_save"), {**thinker, "preset_name": "Canary"})
    preset = Preset.objects.get(name="Canary")
    record.get(alice_client, reverse("preset_list"))
    record.post(alice_client, reverse("preset_start", args=[preset.public_id]))
    record.get(alice_client, reverse("usage"))
    # Every flow above really ran.
    assert ApiCall.objects.filter(request_body__contains="Raw call").exists()


def drive_branches_and_compare(alice_client, conversation, detail, record: Recorder) -> None:
    reply = Message.objects.filter(role="assistant", status=Message.Status.COMPLETE).first()
    question = reply.parent
    record.post(alice_client, detail("reply_regenerate", reply.public_id), form_data(""))
    record.post(alice_client, detail("reply_regenerate_stream", reply.public_id), form_data(""))
    for name, key in (("message_edit", "edit-1"), ("message_edit_stream", "edit-2")):
        edited = {"edit-content": f"Edited {key}", "edit-idempotency_key": key}
        record.post(alice_client, detail(name, question.public_id), edited)
    record.post(alice_client, detail("branch_switch", reply.public_id))
    columns = {
        "column-1-model": "demo/echo",
        "column-2-model": "demo/fault:status=500",
        "column-3-model": "demo/echo",
        "column-3-extra_params": '{"enable_thinking": true}',
    }
    record.post(
        alice_client,
        detail("compare_new"),
        {"content": "Compare", "idempotency_key": "c1", **columns},
    )
    record.post(
        alice_client,
        detail("compare_start"),
        {"content": "Stream", "idempotency_key": "c2", **columns},
    )
    for run in CompareRun.objects.all():
        record.get(alice_client, run.get_absolute_url())
        for position in range(3):
            record.post(alice_client, detail("compare_column_stream", run.public_id, position))
        chosen = Message.objects.filter(compare_column__run=run).first()
        record.post(alice_client, detail("compare_choose", run.public_id, chosen.public_id))
    record.get(alice_client, detail("compare_new"))
    # Every flow above really ran (a refused form would leave nothing to search).
    assert Message.objects.filter(idempotency_key__startswith="edit-").count() == 2
    assert Message.objects.filter(parent=reply.parent, role="assistant").count() == 3
    assert CompareRun.objects.filter(chosen__isnull=False).count() == 2


def every_row_as_text() -> list[tuple[str, str]]:
    rows = []
    for model in apps.get_models():
        for obj in model.objects.all():
            rows.append((f"{model._meta.label} {obj.pk}", serializers.serialize("json", [obj])))
    return rows


def test_the_key_reaches_the_upstream_and_nothing_else(
    canary, alice, alice_client, bob_client, django_user_model, caplog, capsys
):
    admin = django_user_model.objects.create_superuser("root", password="root-password-1")
    admin_client = Client()
    admin_client.force_login(admin)
    record = Recorder()
    caplog.set_level(logging.DEBUG)

    drive_every_flow(alice, alice_client, bob_client, admin_client, record)

    # The flows really ran: calls made, with the key on the wire, a share, an import.
    assert ApiCall.objects.count() >= 6
    assert all(
        request.headers.get("Authorization") == f"Bearer {CANARY_KEY}"
        for request in canary.chat_requests()
    )
    assert Conversation.objects.filter(owner__username="bob").count() == 2
    assert len(record.bodies) > 60

    leaks = [label for label, body in record.bodies if CANARY_KEY.encode() in body]
    leaks += [label for label, text in every_row_as_text() if CANARY_KEY in text]
    leaks += [f"log: {r.name}" for r in caplog.records if CANARY_KEY in r.getMessage()]
    output = capsys.readouterr()
    leaks += ["stdout"] if CANARY_KEY in output.out else []
    leaks += ["stderr"] if CANARY_KEY in output.err else []
    assert leaks == []


def test_the_redaction_is_what_guards_the_stored_headers(canary, alice_client, alice):
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")

    send(alice_client, conversation, "hello")

    headers = ApiCall.objects.get().request_headers
    assert headers["Authorization"] == "Bearer [redacted]"
    assert json.dumps(headers).count("Bearer") == 1
