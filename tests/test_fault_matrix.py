"""The upstream fault matrix, on both paths: the form (no JavaScript) and the stream.

Every fault of the demo upstream ends in a stored call with a clear status, a message the
page shows, and the user's message kept. Retries happen only for 429, 5xx and refused
connections, only before the first token reached the browser, and the demo upstream's own
count of the requests it saw proves how many there were. (Mid-stream faults, with their
partial text, are in test_streaming.py and test_streaming_asgi.py; the form path's details
in test_upstream_failures.py.)
"""

import json
from dataclasses import dataclass

import pytest
from django.urls import reverse

from chat.models import ApiCall, Message
from tests.helpers import form_data

pytestmark = pytest.mark.django_db
TEXT = "Keep this message whatever happens"


@dataclass(frozen=True)
class Fault:
    spec: str | None  # the demo's fault spec; None: nothing listens at the upstream's address
    attempts: int  # requests the upstream sees: 3 when retried (the first and two retries)
    reply: str  # the reply's final status
    error_kind: str  # the last call's
    shown: str  # part of the message on the page


FAULTS = {
    "429 without Retry-After": Fault("status=429", 3, "failed", "http", "Wait a moment"),
    "429 with Retry-After": Fault(
        "status=429,retry_after=1", 3, "failed", "http", "The upstream answered 429"
    ),
    "500": Fault("status=500", 3, "failed", "http", "The upstream answered 500"),
    "502": Fault("status=502", 3, "failed", "http", "The upstream answered 502"),
    "503": Fault("status=503", 3, "failed", "http", "The upstream answered 503"),
    "504": Fault("status=504", 3, "failed", "http", "The upstream answered 504"),
    "400 (not retried)": Fault("status=400", 1, "failed", "http", "The upstream answered 400"),
    # Not followed: the record shows the one request there was, and where it was sent.
    "307 redirect (not followed)": Fault(
        "redirect", 1, "failed", "http", "The upstream answered 307 (Temporary Redirect)"
    ),
    "refused connection": Fault(None, 0, "failed", "connect", "Could not connect"),
    "timeout before the first byte": Fault("delay=2", 1, "failed", "timeout", "sent nothing"),
    "503 once, then fine": Fault("status=503,fail_times=1", 2, "complete", "", ""),
}
STREAM_ONLY = {
    # Provider Claude streams close after a finish_reason without [DONE]: a normal end.
    "finish_reason, no [DONE]": Fault("no_done", 1, "complete", "", ""),
    "neither finish_reason nor [DONE]": Fault("no_end", 1, "interrupted", "broken", "ended"),
}
FORM_ONLY = {
    "malformed JSON": Fault("malformed", 1, "failed", "bad_json", "not a JSON object"),
    "choices: []": Fault("empty_choices", 1, "failed", "empty", "no choices"),
}


@pytest.fixture
def faulty(settings, upstream):
    settings.UPSTREAM_READ_TIMEOUT = 0.5

    def apply(fault: Fault) -> str:
        if fault.spec is None:
            settings.UPSTREAM_BASE_URL = "http://127.0.0.1:9/v1"
            return ""
        return json.dumps({"demo_fault": fault.spec})

    return apply


def check(alice_client, conversation, upstream, fault: Fault, html: str) -> None:
    reply = Message.objects.get(role="assistant")
    last = ApiCall.objects.order_by("attempt").last()
    assert reply.status == fault.reply
    assert last.error_kind == fault.error_kind
    assert last.status == ("succeeded" if fault.reply == "complete" else "failed")
    assert len(upstream.chat_requests()) == fault.attempts
    assert ApiCall.objects.count() == max(fault.attempts, 1 if fault.spec else 3)
    assert Message.objects.get(role="user").content == TEXT
    assert fault.shown in html
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert TEXT in page and fault.shown in page
    if fault.reply != "complete":
        assert ">Retry</button>" in page


@pytest.mark.parametrize("fault", [*FAULTS.values(), *FORM_ONLY.values()],
                         ids=[*FAULTS, *FORM_ONLY])  # fmt: skip
def test_the_form_path_survives(alice_client, conversation, upstream, faulty, fault):
    extra = faulty(fault)
    url = reverse("message_send", args=[conversation.public_id])

    response = alice_client.post(url, form_data(TEXT, extra_params=extra), follow=True)

    check(alice_client, conversation, upstream, fault, response.content.decode())


@pytest.mark.parametrize("fault", [*FAULTS.values(), *STREAM_ONLY.values()],
                         ids=[*FAULTS, *STREAM_ONLY])  # fmt: skip
def test_the_streamed_path_survives(alice_client, conversation, upstream, faulty, fault):
    extra = faulty(fault)
    url = reverse("message_stream", args=[conversation.public_id])

    response = alice_client.post(url, form_data(TEXT, extra_params=extra))

    chunks = b"".join(response.streaming_content).decode()
    done = json.loads(chunks.rsplit("event: done\ndata: ", 1)[1])
    assert done["status"] == fault.reply
    check(alice_client, conversation, upstream, fault, done["html"])


def test_a_retry_waits_as_long_as_retry_after_asks_up_to_the_cap(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_RETRY_MAX_WAIT = 5
    extra = json.dumps({"demo_fault": "status=429,retry_after=1,fail_times=1"})

    alice_client.post(
        reverse("message_send", args=[conversation.public_id]), form_data(TEXT, extra_params=extra)
    )

    first, second = upstream.chat_requests()
    assert second.received_at - first.received_at >= 1.0  # the wait the upstream asked for
    assert Message.objects.get(role="assistant").status == "complete"


def test_a_retry_never_waits_longer_than_the_cap(alice_client, conversation, upstream, settings):
    settings.UPSTREAM_RETRY_MAX_WAIT = 0.2
    extra = json.dumps({"demo_fault": "status=429,retry_after=30,fail_times=1"})

    alice_client.post(
        reverse("message_send", args=[conversation.public_id]), form_data(TEXT, extra_params=extra)
    )

    first, second = upstream.chat_requests()
    assert second.received_at - first.received_at < 1.0  # the 0.2 s cap, not the 30 s asked for
    assert Message.objects.get(role="assistant").status == "complete"
