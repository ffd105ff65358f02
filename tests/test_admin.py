"""The Django admin shows conversations, messages and calls; raw call records are read-only."""

import pytest
from django.test import Client
from django.urls import reverse

from chat import compare
from chat.models import ApiCall, CompareRun, Conversation, Invitation, Message
from tests.helpers import send

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_with_data(alice_client, alice, django_user_model):
    conversation = Conversation.objects.create(owner=alice, model="demo/echo")
    send(alice_client, conversation, "for the admin")
    column = {"model": "demo/echo", "stop": [], "extra_params": {}}
    compare.compare_send(
        conversation=conversation,
        content="compared",
        idempotency_key="admin-run",
        parameter_sets=[column, column],
    )
    admin = django_user_model.objects.create_superuser("root", password="root-password-1")
    client = Client()
    client.force_login(admin)
    return client


@pytest.mark.parametrize("model", [Conversation, Message, ApiCall, CompareRun, Invitation])
def test_every_admin_page_loads(admin_client_with_data, model):
    if model is Invitation:
        Invitation.objects.create(note="for the admin")
    name = model._meta.model_name
    listing = admin_client_with_data.get(reverse(f"admin:chat_{name}_changelist"))
    change = admin_client_with_data.get(
        reverse(f"admin:chat_{name}_change", args=[model.objects.first().pk])
    )

    assert listing.status_code == change.status_code == 200


def test_the_raw_call_record_cannot_be_edited(admin_client_with_data):
    call = ApiCall.objects.first()
    url = reverse("admin:chat_apicall_change", args=[call.pk])

    page = admin_client_with_data.get(url).content.decode()
    admin_client_with_data.post(url, {"request_body": "tampered"})

    assert 'name="request_body"' not in page  # shown as text, not a field
    call.refresh_from_db()
    assert call.request_body != "tampered"
    assert admin_client_with_data.get(reverse("admin:chat_apicall_add")).status_code == 403


# --- Only staff: everyone else finds nothing there --------------------------------

ADMIN_URLS = ["/admin/", "/admin/login/", "/admin/chat/conversation/", "/admin/auth/user/1/change/"]


@pytest.mark.parametrize("url", ADMIN_URLS)
def test_the_admin_is_not_found_for_an_anonymous_visitor(url):
    response = Client().get(url)

    assert response.status_code == 404


@pytest.mark.parametrize("url", ADMIN_URLS)
def test_the_admin_is_not_found_for_a_signed_in_user_who_is_not_staff(alice_client, url):
    assert alice_client.get(url).status_code == 404


def test_staff_log_in_through_the_apps_own_login_and_then_use_the_admin(django_user_model):
    django_user_model.objects.create_user("root", password="root-password-1", is_staff=True)
    client = Client()

    client.post(reverse("login"), {"username": "root", "password": "root-password-1"})

    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/login/").url == reverse("admin:index")
