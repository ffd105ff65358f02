"""Every upstream failure ends in a stored call, a visible message, and the user's text kept."""

import pytest
from django.urls import reverse

from chat.models import ApiCall, Message
from tests.helpers import form_data, send

pytestmark = pytest.mark.django_db


def fail_with(alice_client, conversation, spec: str, text: str = "Please keep me"):
    send(alice_client, conversation, text, model=f"demo/fault:{spec}")
    return Message.objects.get(role="assistant")


def assert_failure_is_visible(
    alice_client, conversation, expected: str, text: str = "Please keep me"
):
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert expected in page
    assert text in page
    assert ">Retry</button>" in page
    assert Message.objects.get(role="user").content == text


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_it_retries_server_errors_then_shows_the_provider_message(
    alice_client, conversation, upstream, status
):
    reply = fail_with(alice_client, conversation, f"status={status}")

    assert reply.status == Message.Status.FAILED
    assert len(upstream.chat_requests()) == 3  # the first try and two retries
    calls = list(ApiCall.objects.order_by("attempt"))
    assert [call.attempt for call in calls] == [1, 2, 3]
    assert all(
        call.status == ApiCall.Status.FAILED and call.http_status == status for call in calls
    )
    assert calls[-1].response_body  # the provider's error body, as received
    assert_failure_is_visible(alice_client, conversation, f"The upstream answered {status}")


def test_it_recovers_when_a_retry_succeeds(alice_client, conversation, upstream):
    reply = fail_with(alice_client, conversation, "status=503,fail_times=1")

    assert reply.status == Message.Status.COMPLETE
    assert [call.status for call in ApiCall.objects.order_by("attempt")] == ["failed", "succeeded"]
    assert len(upstream.chat_requests()) == 2


@pytest.mark.parametrize("spec", ["status=429", "status=429,retry_after=1"])
def test_it_retries_rate_limits_with_and_without_retry_after(
    alice_client, conversation, upstream, spec
):
    reply = fail_with(alice_client, conversation, spec)

    assert reply.status == Message.Status.FAILED
    assert len(upstream.chat_requests()) == 3
    assert_failure_is_visible(alice_client, conversation, "Wait a moment, then retry.")


def test_it_does_not_retry_a_bad_request(alice_client, conversation, upstream):
    fail_with(alice_client, conversation, "status=400")

    assert len(upstream.chat_requests()) == 1
    assert_failure_is_visible(alice_client, conversation, "The upstream answered 400 (Bad Request)")


def test_it_explains_a_rejected_key(alice_client, conversation, upstream, settings):
    settings.UPSTREAM_API_KEY = "demo-invalid-key"
    send(alice_client, conversation, "Please keep me")

    assert len(upstream.chat_requests()) == 1
    assert_failure_is_visible(
        alice_client, conversation, "Check UPSTREAM_API_KEY in your .env file."
    )


def test_it_reports_a_refused_connection(alice_client, conversation, settings):
    settings.UPSTREAM_BASE_URL = "http://127.0.0.1:9/v1"
    send(alice_client, conversation, "Please keep me")

    calls = ApiCall.objects.all()
    assert len(calls) == 3
    assert {call.error_kind for call in calls} == {"connect"}
    assert all(call.http_status is None for call in calls)
    assert_failure_is_visible(alice_client, conversation, "Could not connect to 127.0.0.1:9")


def test_it_gives_up_when_nothing_arrives_before_the_read_timeout(
    alice_client, conversation, upstream, settings
):
    settings.UPSTREAM_READ_TIMEOUT = 0.3
    reply = fail_with(alice_client, conversation, "delay=2")

    assert reply.status == Message.Status.FAILED
    assert ApiCall.objects.get().error_kind == "timeout"
    assert_failure_is_visible(alice_client, conversation, "sent nothing for 0.3 s")


def test_it_reports_malformed_json(alice_client, conversation, upstream):
    fail_with(alice_client, conversation, "malformed")

    call = ApiCall.objects.get()
    assert (call.error_kind, call.http_status) == ("bad_json", 200)
    assert call.response_body  # kept as received, for the inspector
    assert_failure_is_visible(alice_client, conversation, "not a JSON object")


def test_it_reports_empty_choices(alice_client, conversation):
    fail_with(alice_client, conversation, "empty_choices")

    assert ApiCall.objects.get().error_kind == "empty"
    assert_failure_is_visible(alice_client, conversation, "no choices")


def test_it_reports_a_connection_reset_mid_body(alice_client, conversation):
    reply = fail_with(alice_client, conversation, "reset_after=1")

    assert reply.status == Message.Status.FAILED
    assert_failure_is_visible(alice_client, conversation, "broke before the reply was complete")


def test_retry_resends_without_retyping(alice_client, conversation, upstream):
    reply = fail_with(alice_client, conversation, "status=400")
    parameters = reverse("parameters_save", args=[conversation.public_id])
    alice_client.post(parameters, form_data("", model="demo/echo"))

    response = alice_client.post(
        reverse("reply_retry", args=[conversation.public_id, reply.public_id])
    )

    assert response.status_code == 302
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert "Please keep me" in reply.content
    assert [call.attempt for call in reply.calls.all()] == [1, 2]
    assert Message.objects.filter(role="user").count() == 1
    assert upstream.chat_requests()[-1].body.count(b"Please keep me") == 1


def test_a_failed_reply_is_not_sent_back_as_context(alice_client, conversation, upstream):
    fail_with(alice_client, conversation, "status=400", text="first")
    send(alice_client, conversation, "second")

    last_body = upstream.chat_requests()[-1].body.decode()
    assert '"role":"assistant"' not in last_body
    assert '"content":"first"' in last_body and '"content":"second"' in last_body


def test_retry_of_a_reply_that_did_not_fail_changes_nothing(alice_client, conversation, upstream):
    send(alice_client, conversation, "fine")
    reply = Message.objects.get(role="assistant")

    alice_client.post(reverse("reply_retry", args=[conversation.public_id, reply.public_id]))

    assert len(upstream.chat_requests()) == 1
